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
use super::setup::StartError;
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
/// How long the start waits for the first connection attempt's verdict: the attempt's
/// own limit (2 s) and its first round trips. A Redis slower than that counts as down,
/// and the start goes on.
pub(super) const START_WAIT: Duration = Duration::from_secs(3);

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
    /// The connection's id (single node): a new one means a silent reconnect.
    pub(super) client_id: Option<i64>,
    /// How the server lets a connection be identified.
    pub(super) marker: Marker,
    /// Why the first connection attempt failed, if no retry can fix it.
    pub(super) start_error: Option<StartError>,
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
            marker: Marker::ClientId,
            start_error: None,
            settle_until: Instant::now(),
            renewed_at: Instant::now(),
            slots: None,
        }
    }
}

/// How a single node's connection is identified, so that a silent reconnect (a new
/// connection behind the connection manager) is noticed even without its disconnection
/// push. `CLIENT ID` where the server allows it; a managed Redis may rename or deny
/// `CLIENT`, and then `HELLO 3` carries the same id; failing both, `PING` proves the
/// link alive and the disconnection push alone tells a reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Marker {
    ClientId,
    Hello,
    Ping,
}

impl Marker {
    /// The command that reads the connection's id (or only proves the link, for `Ping`).
    pub(super) fn cmd(self) -> redis::Cmd {
        match self {
            Marker::ClientId => redis::cmd("CLIENT").arg("ID").to_owned(),
            Marker::Hello => redis::cmd("HELLO").arg(3).to_owned(),
            Marker::Ping => redis::cmd("PING"),
        }
    }

    /// The connection's id in the answer to [`Marker::cmd`].
    pub(super) fn id(self, answer: &Value) -> Option<i64> {
        match (self, answer) {
            (Marker::ClientId, Value::Int(id)) => Some(*id),
            (Marker::Hello, Value::Map(fields)) => fields.iter().find_map(|(k, v)| match (k, v) {
                (Value::BulkString(k), Value::Int(id)) if k == b"id" => Some(*id),
                (Value::SimpleString(k), Value::Int(id)) if k == "id" => Some(*id),
                _ => None,
            }),
            _ => None,
        }
    }
}

/// Why a connection attempt failed.
pub(super) enum Down {
    /// Redis, or the way to it, failed.
    Redis(RedisError),
    /// The settings cannot work (a CA file gone from disk, say).
    Setup(StartError),
}

impl From<RedisError> for Down {
    fn from(err: RedisError) -> Down {
        Down::Redis(err)
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
                self.set_down(&Down::Redis(err));
            }
        }
    }

    /// The link is down: say why, in words that name the fix where there is one. On the
    /// first attempt, a failure no retry can fix is kept for [`super::RedisStore::open`].
    fn set_down(&self, why: &Down) {
        let (error, fatal) = match why {
            Down::Setup(e) => (e.to_string(), Some(e.clone())),
            Down::Redis(err) => match (self.opts.fatal(err), self.opts.hint(err)) {
                (Some(fatal), _) => (fatal.to_string(), Some(fatal)),
                (None, Some(hint)) => (format!("{err} ({hint})"), None),
                (None, None) => (err.to_string(), None),
            },
        };
        let first = !*self.first_attempt.borrow();
        let reported = first && fatal.is_some() && self.start_checked.load(Ordering::SeqCst);
        let mut link = lock(&self.link);
        link.conn = None;
        link.error = error;
        if first {
            link.start_error = fatal;
        }
        if reported {
            // RedisStore::open returns it: the process says it once, and stops.
        } else if link.up {
            link.up = false;
            link.since = Instant::now();
            tracing::warn!(
                redis = %self.opts.target(),
                error = %link.error,
                "redis unreachable: serving local rosters, reconnecting"
            );
        } else if first {
            tracing::warn!(
                redis = %self.opts.target(),
                error = %link.error,
                "redis unreachable at start: serving local rosters, connecting"
            );
        }
        drop(link);
        self.first_attempt.send_replace(true);
    }

    /// A new connection: TLS for `rediss://` (the built-in roots, or `REDIS_CA_FILE`),
    /// user and password from the URL, RESP3.
    async fn open(&self, epoch: u64) -> Result<Conn, Down> {
        let certificates = self.opts.certificates().map_err(Down::Setup)?;
        let pushes = self.pushes.clone();
        let push = move |info: PushInfo| pushes.send((epoch, info));
        if self.opts.cluster {
            let mut builder = ClusterClientBuilder::new(self.opts.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(OP_TIMEOUT)
                .retries(2);
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            let client = builder.build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let info = self.opts.urls[0].as_str().into_connection_info()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let info = info.set_redis_settings(settings);
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                None => redis::Client::open(info)?,
            };
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
    async fn connect(&self) -> Result<(), Down> {
        let epoch = {
            let mut link = lock(&self.link);
            link.epoch += 1;
            link.epoch
        };
        let conn = match timeout(CONNECT_TIMEOUT * 2, self.open(epoch)).await {
            Ok(conn) => conn?,
            Err(_) => return Err(timed_out("connecting").into()),
        };
        Ok(self.recover(conn).await?)
    }

    /// The connection is (again) usable but may have lost its subscriptions, and Redis
    /// its data: renew the lease before anything else, then hand over to the subscriber
    /// task (Reconnected, resubscribe, Resync).
    async fn recover(&self, mut conn: Conn) -> Result<(), RedisError> {
        self.lost.store(false, Ordering::SeqCst);
        let client_id = match &mut conn {
            Conn::Single(c) => {
                let (marker, id) = self.call(self.identify(c)).await?;
                lock(&self.link).marker = marker;
                id
            }
            Conn::Cluster(c) => {
                self.call(redis::cmd("PING").exec_async(c)).await?;
                None
            }
        };
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
        // Recover is queued before the first attempt is declared over, so that a room
        // watched right after RedisStore::open returns gets its Resync after the
        // Reconnected, as after any later reconnect.
        let _ = self.subs.send(SubCmd::Recover);
        self.first_attempt.send_replace(true);
        Ok(())
    }

    /// How this server lets a connection be identified, and this connection's id: see
    /// [`Marker`]. Tried in order on every (re)connection, so a server that allows
    /// `CLIENT` again is used as such.
    async fn identify(
        &self,
        conn: &mut ConnectionManager,
    ) -> Result<(Marker, Option<i64>), RedisError> {
        for marker in [Marker::ClientId, Marker::Hello] {
            match marker.cmd().query_async::<Value>(conn).await {
                Ok(answer) => {
                    if let Some(id) = marker.id(&answer) {
                        return Ok((marker, Some(id)));
                    }
                }
                Err(err) if refused(&err) => {
                    if lock(&self.link).marker == marker {
                        tracing::info!(%err, command = ?marker, "redis refuses this command; identifying connections another way");
                    }
                }
                Err(err) => return Err(err),
            }
        }
        redis::cmd("PING").exec_async(conn).await?;
        Ok((Marker::Ping, None))
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
            None => {
                let marker = lock(&self.link).marker;
                self.call(probe(&mut conn, marker)).await?
            }
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
async fn probe(conn: &mut Conn, marker: Marker) -> Result<Option<i64>, RedisError> {
    match conn {
        Conn::Single(c) => {
            let answer: Value = marker.cmd().query_async(c).await?;
            Ok(marker.id(&answer))
        }
        // PING goes to every primary.
        Conn::Cluster(c) => {
            redis::cmd("PING").exec_async(c).await?;
            Ok(None)
        }
    }
}

/// Did the server answer with an error reply (rather than fail to answer)?
fn refused(err: &RedisError) -> bool {
    err.code().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_marker_reads_the_connection_id_from_its_answer() {
        assert_eq!(Marker::ClientId.id(&Value::Int(7)), Some(7));
        let hello = Value::Map(vec![
            (
                Value::BulkString(b"server".to_vec()),
                Value::BulkString(b"redis".to_vec()),
            ),
            (Value::BulkString(b"proto".to_vec()), Value::Int(3)),
            (Value::BulkString(b"id".to_vec()), Value::Int(42)),
        ]);
        assert_eq!(Marker::Hello.id(&hello), Some(42));
        assert_eq!(Marker::Hello.id(&Value::Int(42)), None);
        assert_eq!(Marker::Ping.id(&Value::SimpleString("PONG".into())), None);
    }
}

//! This instance's liveness lease, and reaping the instances whose lease ran out.
//!
//! On every tick of the supervisor (every `REAP_MS`) the lease is renewed, and the same
//! round trip lists the expired leases (`lua/lease.lua`); the entries of those instances
//! are then removed from every room this instance holds, once per (instance, expiry,
//! room). For one lease after a reconnect nobody is reaped (see the module doc of the
//! store).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use redis::{RedisError, Value};
use tokio::time::Instant;

use super::link::Conn;
use super::{lock, Inner};
use crate::protocol::RoomId;
use crate::room::InstanceId;
use crate::store::StoreError;

/// The rooms already reaped for each expired lease (instance, expiry), so a lease that
/// stays listed is reaped once per room.
pub(super) type Reaped = HashSet<(InstanceId, u64, RoomId)>;

impl Inner {
    /// Still within one lease of the last (re)connection: reap nobody yet.
    pub(super) fn settling(&self) -> bool {
        Instant::now() < lock(&self.link).settle_until
    }

    /// Renew the lease; reap the instances whose lease ran out in every held room that
    /// was not reaped for them yet. The connection's id, if the renewal read it.
    pub(super) async fn tick(&self, reaped: &mut Reaped) -> Result<Option<i64>, StoreError> {
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
    pub(super) async fn renew_lease(
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
}

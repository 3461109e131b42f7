//! Where rooms live: the one seam between "sockets on this process" (the hub) and "who
//! is in the room everywhere" (a store).
//!
//! [`PresenceStore`] is implemented by [`memory::MemoryStore`] (the default: one
//! process) and by [`redis::RedisStore`] (every instance sees one room). The hub never talks to
//! Redis; stores never touch sockets. One conformance suite (`tests/store_conformance.rs`)
//! runs against every store.

pub mod memory;
pub mod metered;
pub mod redis;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::protocol::{Id, RawJson, RoomId};
use crate::room::{Change, Entry, InstanceId, RoomState};

/// A store operation that did not happen. The hub keeps serving its local rosters and
/// repairs the store when it is back (see [`Feed::Reconnected`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached right now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this code does not understand.
    #[error("store protocol error: {0}")]
    Protocol(String),
}

/// An ephemeral room event as it crosses instances: never stored, at most once.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct StoreEvent {
    pub from: Id,
    pub event: Arc<str>,
    pub data: RawJson,
}

/// What a store tells the hub, in order.
#[derive(Debug)]
pub enum Feed {
    /// A change of a watched room, made by any instance (this one's own included, as an
    /// echo the hub ignores by version). Changes of one room arrive in version order, but
    /// delivery is at most once: a skipped version means the hub must re-read the room.
    Change { room: RoomId, change: Change },
    /// An event another instance published in a watched room (never this one's own).
    Event { room: RoomId, event: StoreEvent },
    /// The subscription to `room` is (again) active: changes from now on will arrive, so
    /// the hub reads a fresh snapshot to cover whatever came before.
    Resync { room: RoomId },
    /// The backend was lost and is back. Its contents may be stale or gone: the hub
    /// re-registers every local entry; `Resync` follows for every watched room.
    Reconnected,
}

pub type FeedReceiver = mpsc::UnboundedReceiver<Feed>;

/// How the store is doing, for `/server/readyz` and logs.
#[derive(Clone, Debug, Serialize)]
pub struct StoreHealth {
    /// `memory` or `redis`.
    pub kind: &'static str,
    pub connected: bool,
    pub detail: String,
}

/// The contract every store keeps.
///
/// - Entries are per (instance, presence id); an instance writes only its own
///   ([`PresenceStore::instance`]). A room's visible roster is the union of all entries.
/// - Every mutation that changes something bumps the room version by exactly one and
///   returns that [`Change`]; it also reaches every instance watching the room through
///   the feed. Mutations that change nothing return `None` and publish nothing.
/// - Removal is idempotent: removing an absent entry, or from an unknown room, is
///   `Ok(None)`. An unknown room reads as empty at version 0. A room whose last entry
///   goes leaves nothing behind (its version starts again from 0).
/// - Liveness: an instance's entries in a room stay while it refreshes that room at least
///   once per lease ([`PresenceStore::heartbeat`]; any write to the room counts too).
///   Entries of an instance that stopped refreshing are removed by whichever instance
///   heartbeats that room next, as a change like any other.
/// - Events are not stored: [`PresenceStore::publish`] reaches the other instances
///   watching the room, at most once.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// This process's name in the store.
    fn instance(&self) -> &InstanceId;

    /// The feed of changes and events for watched rooms; the hub takes it once.
    fn take_feed(&self) -> Option<FeedReceiver>;

    /// Write several of this instance's entries in `room` as one change: `Some` writes
    /// (insert or replace: always a change), `None` removes (an absent entry is none).
    /// `None` when nothing changed. A burst of joins to one room is one call and one
    /// change, not one per join.
    async fn write(
        &self,
        room: &RoomId,
        entries: &[(Id, Option<Entry>)],
    ) -> Result<Option<Change>, StoreError>;

    /// Write this instance's entry for `id` in `room`.
    async fn upsert(&self, room: &RoomId, id: &Id, entry: &Entry) -> Result<Change, StoreError> {
        self.write(room, &[(id.clone(), Some(entry.clone()))])
            .await?
            .ok_or_else(|| StoreError::Protocol("an upsert changed nothing".into()))
    }

    /// Remove this instance's entry for `id` in `room`.
    async fn remove(&self, room: &RoomId, id: &Id) -> Result<Option<Change>, StoreError> {
        self.write(room, &[(id.clone(), None)]).await
    }

    /// Make this instance's entries in `room` exactly `entries` (after a reconnect: what
    /// the store may have lost, or still holds from before, is set right in one change).
    async fn register(
        &self,
        room: &RoomId,
        entries: &[(Id, Entry)],
    ) -> Result<Option<Change>, StoreError>;

    /// The whole room, every instance's entries, at one version.
    async fn snapshot(&self, room: &RoomId) -> Result<RoomState, StoreError>;

    /// Refresh this instance's liveness in `rooms` and prune instances that stopped
    /// refreshing theirs. Returns each room's version, so the hub can notice a change the
    /// feed dropped. One round trip for all rooms, whatever their number.
    async fn heartbeat(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, u64)>, StoreError>;

    /// Start receiving the room's changes and events. Takes effect in call order with
    /// [`PresenceStore::unwatch`]; [`Feed::Resync`] says when it is active.
    fn watch(&self, room: &RoomId);

    /// Stop receiving the room's changes and events.
    fn unwatch(&self, room: &RoomId);

    /// Send an ephemeral event to the other instances watching `room`.
    async fn publish(&self, room: &RoomId, event: &StoreEvent) -> Result<(), StoreError>;

    fn health(&self) -> StoreHealth;

    /// The process is going away: leave this instance's entries to run out their lease
    /// (the sockets' grace window) rather than removing them, and stop background work.
    async fn shutdown(&self);
}

impl fmt::Debug for dyn PresenceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresenceStore({})", self.instance())
    }
}

/// The store the configuration asks for: memory by default, Redis with `REDIS_URL`.
/// Never fails because a backend is down: a Redis store starts disconnected and
/// recovers on its own. Call it inside a Tokio runtime (the Redis store starts its
/// background tasks).
pub fn from_config(config: &crate::config::Config, instance: InstanceId) -> Arc<dyn PresenceStore> {
    if let Some(options) = redis::RedisOptions::from_config(config) {
        return Arc::new(redis::RedisStore::new(options, instance));
    }
    // The memory store has one instance: its lease is only a safety net, so it is the
    // member staleness limit rather than the shared-store lease.
    Arc::new(memory::MemoryStore::new(instance, config.stale()))
}

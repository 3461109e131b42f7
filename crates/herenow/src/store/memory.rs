//! The default store: rooms in this process's memory.
//!
//! It keeps the same model as the Redis store (entries per instance, versions, leases,
//! a feed with echoes), so the hub cannot tell them apart and the conformance suite holds
//! for both. Several [`MemoryStore`]s can share one [`MemoryBackend`] to play several
//! instances in one process, which is how the multi-instance logic of the hub is tested
//! without a network. Its clock, for the stamps entries ask for ([`crate::room::Stamp`]),
//! is this process's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Feed, FeedReceiver, PresenceStore, StoreError, StoreEvent, StoreHealth};
use crate::protocol::{Id, RoomId};
use crate::room::{Change, Entry, InstanceId, Op, RoomState, Stamped};

#[derive(Default)]
struct RoomData {
    version: u64,
    entries: HashMap<(InstanceId, Id), (Entry, u64)>,
    /// When each instance last refreshed (or wrote to) this room.
    leases: HashMap<InstanceId, Instant>,
}

#[derive(Default)]
struct Backend {
    rooms: HashMap<RoomId, RoomData>,
    watchers: HashMap<RoomId, HashMap<InstanceId, mpsc::UnboundedSender<Feed>>>,
}

impl Backend {
    /// Bump the room version for `ops`, stamp the entries they write, deliver the change
    /// to every watcher, and drop the room once it is empty.
    fn commit(&mut self, room: &RoomId, ops: Vec<Op>) -> Option<Change> {
        if ops.is_empty() {
            return None;
        }
        let now = clock_ms();
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Upsert {
                    instance,
                    id,
                    entry,
                } => Op::Upsert {
                    instance,
                    id,
                    entry: entry.stamped(now),
                },
                remove => remove,
            })
            .collect();
        let data = self.rooms.get_mut(room)?;
        data.version += 1;
        let version = data.version;
        for op in &ops {
            match op {
                Op::Upsert {
                    instance,
                    id,
                    entry,
                } => {
                    data.entries
                        .insert((instance.clone(), id.clone()), (entry.clone(), version));
                }
                Op::Remove { instance, id } => {
                    data.entries.remove(&(instance.clone(), id.clone()));
                }
            }
        }
        if data.entries.is_empty() {
            self.rooms.remove(room);
        }
        let change = Change { version, ops };
        for tx in self.watchers.get(room).into_iter().flat_map(|w| w.values()) {
            let _ = tx.send(Feed::Change {
                room: room.clone(),
                change: change.clone(),
            });
        }
        Some(change)
    }
}

/// The store's clock: ms since the Unix epoch.
fn clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Rooms shared by every [`MemoryStore`] made from it.
#[derive(Default)]
pub struct MemoryBackend {
    inner: Mutex<Backend>,
}

impl MemoryBackend {
    pub fn new() -> Arc<MemoryBackend> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backend> {
        // A panic elsewhere cannot leave a half-written room: every mutation is one call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rooms that hold any entry (for tests: empty rooms leave nothing behind).
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }
}

/// One instance's view of a [`MemoryBackend`].
pub struct MemoryStore {
    backend: Arc<MemoryBackend>,
    instance: InstanceId,
    lease: Duration,
    feed_tx: mpsc::UnboundedSender<Feed>,
    feed_rx: Mutex<Option<FeedReceiver>>,
}

impl MemoryStore {
    /// A store of its own: the single-process default.
    pub fn new(instance: InstanceId, lease: Duration) -> MemoryStore {
        MemoryStore::with_backend(MemoryBackend::new(), instance, lease)
    }

    /// Another instance on a shared backend.
    pub fn with_backend(
        backend: Arc<MemoryBackend>,
        instance: InstanceId,
        lease: Duration,
    ) -> MemoryStore {
        let (feed_tx, feed_rx) = mpsc::unbounded_channel();
        MemoryStore {
            backend,
            instance,
            lease,
            feed_tx,
            feed_rx: Mutex::new(Some(feed_rx)),
        }
    }

    pub fn backend(&self) -> &Arc<MemoryBackend> {
        &self.backend
    }

    fn touch(&self, data: &mut RoomData) {
        data.leases.insert(self.instance.clone(), Instant::now());
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    fn instance(&self) -> &InstanceId {
        &self.instance
    }

    fn take_feed(&self) -> Option<FeedReceiver> {
        self.feed_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    async fn write(
        &self,
        room: &RoomId,
        entries: &[(Id, Option<Entry>)],
    ) -> Result<Option<Change>, StoreError> {
        let mut b = self.backend.lock();
        if entries.iter().all(|(_, e)| e.is_none()) && !b.rooms.contains_key(room) {
            return Ok(None);
        }
        let data = b.rooms.entry(room.clone()).or_default();
        self.touch(data);
        let ops: Vec<Op> = entries
            .iter()
            .filter_map(|(id, entry)| match entry {
                Some(entry) => Some(Op::Upsert {
                    instance: self.instance.clone(),
                    id: id.clone(),
                    entry: entry.clone(),
                }),
                None => data
                    .entries
                    .contains_key(&(self.instance.clone(), id.clone()))
                    .then(|| Op::Remove {
                        instance: self.instance.clone(),
                        id: id.clone(),
                    }),
            })
            .collect();
        if ops.is_empty() && data.entries.is_empty() {
            b.rooms.remove(room);
        }
        Ok(b.commit(room, ops))
    }

    async fn register(
        &self,
        room: &RoomId,
        entries: &[(Id, Option<Entry>)],
    ) -> Result<Option<Change>, StoreError> {
        let mut b = self.backend.lock();
        if entries.is_empty() && !b.rooms.contains_key(room) {
            return Ok(None);
        }
        let data = b.rooms.entry(room.clone()).or_default();
        self.touch(data);
        let wanted = |id: &Id| entries.iter().any(|(e, entry)| e == id && entry.is_some());
        let mut ops: Vec<Op> = data
            .entries
            .keys()
            .filter(|(inst, id)| *inst == self.instance && !wanted(id))
            .map(|(instance, id)| Op::Remove {
                instance: instance.clone(),
                id: id.clone(),
            })
            .collect();
        for (id, entry) in entries {
            let held = data.entries.get(&(self.instance.clone(), id.clone()));
            match entry {
                Some(entry) if held.map(|(e, _)| e) != Some(entry) => ops.push(Op::Upsert {
                    instance: self.instance.clone(),
                    id: id.clone(),
                    entry: entry.clone(),
                }),
                Some(_) => {}
                // Named even when the store no longer holds it (see the trait).
                None if held.is_none() => ops.push(Op::Remove {
                    instance: self.instance.clone(),
                    id: id.clone(),
                }),
                None => {}
            }
        }
        if ops.is_empty() && data.entries.is_empty() {
            b.rooms.remove(room);
        }
        Ok(b.commit(room, ops))
    }

    async fn snapshot(&self, room: &RoomId) -> Result<RoomState, StoreError> {
        let b = self.backend.lock();
        let Some(data) = b.rooms.get(room) else {
            return Ok(RoomState::default());
        };
        Ok(RoomState {
            version: data.version,
            entries: data
                .entries
                .iter()
                .map(|((instance, id), (entry, stamp))| Stamped {
                    instance: instance.clone(),
                    id: id.clone(),
                    entry: entry.clone(),
                    stamp: *stamp,
                })
                .collect(),
            writers: data.leases.keys().cloned().collect(),
        })
    }

    async fn heartbeat(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, u64)>, StoreError> {
        let mut b = self.backend.lock();
        let now = Instant::now();
        let mut versions = Vec::with_capacity(rooms.len());
        for room in rooms {
            let Some(data) = b.rooms.get_mut(room) else {
                versions.push((room.clone(), 0));
                continue;
            };
            // Refresh, never add: only a write makes an instance one of the room's writers.
            if let Some(at) = data.leases.get_mut(&self.instance) {
                *at = now;
            }
            let expired: Vec<InstanceId> = data
                .leases
                .iter()
                .filter(|(_, at)| now.duration_since(**at) > self.lease)
                .map(|(inst, _)| inst.clone())
                .collect();
            let ops: Vec<Op> = data
                .entries
                .keys()
                .filter(|(inst, _)| expired.contains(inst))
                .map(|(instance, id)| Op::Remove {
                    instance: instance.clone(),
                    id: id.clone(),
                })
                .collect();
            for inst in &expired {
                data.leases.remove(inst);
            }
            let version = match b.commit(room, ops) {
                Some(change) => change.version,
                None => b.rooms.get(room).map_or(0, |d| d.version),
            };
            versions.push((room.clone(), version));
        }
        Ok(versions)
    }

    fn watch(&self, room: &RoomId) {
        let mut b = self.backend.lock();
        b.watchers
            .entry(room.clone())
            .or_default()
            .insert(self.instance.clone(), self.feed_tx.clone());
        let _ = self.feed_tx.send(Feed::Resync { room: room.clone() });
    }

    fn unwatch(&self, room: &RoomId) {
        let mut b = self.backend.lock();
        if let Some(w) = b.watchers.get_mut(room) {
            w.remove(&self.instance);
            if w.is_empty() {
                b.watchers.remove(room);
            }
        }
    }

    async fn publish(&self, room: &RoomId, event: &StoreEvent) -> Result<(), StoreError> {
        let b = self.backend.lock();
        for (inst, tx) in b.watchers.get(room).into_iter().flatten() {
            if *inst != self.instance {
                let _ = tx.send(Feed::Event {
                    room: room.clone(),
                    event: event.clone(),
                });
            }
        }
        Ok(())
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            kind: "memory",
            connected: true,
            detail: "in-process store (one instance)".into(),
        }
    }

    async fn shutdown(&self) {}
}

//! Everything the hub asks of the store for a room: this instance's writes, re-reads,
//! and repairs after the store failed or lost data.
//!
//! Writes of one room go through an async gate, one at a time, each sending the entry as
//! it is *now*: writes cannot overtake each other, and a burst collapses into fewer.
//! Reads of one room go through a gate of their own, so a snapshot never replaces a
//! newer one read concurrently. When a write fails, the mirror drifts (see `mirror.rs`):
//! local sockets keep seeing each other's changes, applied by the hub itself, and the
//! room is repaired — every entry of this instance written again in one call, then
//! re-read — when the store answers again.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;

use super::mirror::{Read, Reason};
use super::{now_ms, Hub, Room, RoomCell, Timer};
use crate::protocol::Id;
use crate::room::{Change, Entry, InstanceId, Op, RoomState, Roster, Stamped};

impl Hub {
    /// Bring the store in line with this instance's entry for `id`, and with every other
    /// entry of the room that changed meanwhile: the gate's holder writes all of them in
    /// one call, so the writes queued behind it find theirs done. Returns the store version
    /// that includes `id`'s entry; `None` when the store is away (the mirror then has the
    /// change already).
    pub(super) async fn write(self: &Arc<Self>, cell: &Arc<RoomCell>, id: &Id) -> Option<u64> {
        let _gate = cell.writes.lock().await;
        let batch = {
            let mut room = cell.lock();
            if self.is_draining() {
                return None;
            }
            let batch = room.members.take_dirty();
            if batch.is_empty() {
                // Written by an earlier holder of the gate (or nothing to write).
                return room.members.get(id).map(|l| l.written());
            }
            if room.mirror.is_adrift() {
                // The store is away: its repair will write everything at once.
                self.apply_own(cell, &mut room, &batch);
                self.settle(cell, room, &batch);
                return None;
            }
            batch
        };
        let result = self.store.write(&cell.id, &batch).await;
        let mut room = cell.lock();
        let version = match result {
            Ok(change) => {
                let version = change.as_ref().map_or(0, |c| c.version);
                for (written, desired) in &batch {
                    if let Some(local) = room.members.get_mut(written) {
                        let held = held(change.as_ref(), self.store.instance(), written, desired);
                        local.stored(desired.as_ref(), held, version);
                    }
                }
                if let Some(change) = change {
                    if self.apply(cell, &mut room, change, false) {
                        self.changed(cell, &mut room);
                    }
                }
                room.members.get(id).map(|l| l.written())
            }
            Err(err) => {
                tracing::warn!(room = %cell.id, %err, "store write failed; serving the local roster until it is back");
                let room = &mut *room;
                let local = local_state(room, self.store.instance());
                room.mirror.drift(&cell.id, || local);
                self.apply_own(cell, room, &batch);
                None
            }
        };
        self.settle(cell, room, &batch);
        version
    }

    /// After a write: forget members that are gone, and the room if it is empty.
    fn settle(
        &self,
        cell: &Arc<RoomCell>,
        mut room: std::sync::MutexGuard<'_, Room>,
        batch: &[(Id, Option<Entry>)],
    ) {
        for (id, _) in batch {
            room.members.prune(id);
        }
        drop(room);
        self.maybe_retire(cell);
    }

    /// Show changes of our own entries that the store did not take.
    fn apply_own(
        self: &Arc<Self>,
        cell: &Arc<RoomCell>,
        room: &mut Room,
        batch: &[(Id, Option<Entry>)],
    ) {
        let instance = self.store.instance();
        let now = now_ms();
        let ops: Vec<Op> = batch
            .iter()
            .map(|(id, desired)| match desired {
                // No store to stamp it: this instance's clock stands in until the repair.
                Some(entry) => Op::Upsert {
                    instance: instance.clone(),
                    id: id.clone(),
                    entry: entry.clone().stamped(now),
                },
                None => Op::Remove {
                    instance: instance.clone(),
                    id: id.clone(),
                },
            })
            .collect();
        room.mirror.apply_local(&ops);
        self.changed(cell, room);
    }

    /// Make the store hold exactly this instance's entries of the room, then re-read it.
    pub(super) async fn repair(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        let renumbered;
        {
            let _gate = cell.writes.lock().await;
            let (entries, before) = {
                let room = cell.lock();
                if self.is_draining() || room.mirror.is_retired() {
                    return;
                }
                let before = room.mirror.roster().map_or(0, Roster::store_version);
                (room.members.to_register(), before)
            };
            let result = self.store.register(&cell.id, &entries).await;
            let mut room = cell.lock();
            if let Err(err) = &result {
                tracing::debug!(room = %cell.id, %err, "re-register failed; retrying when the store is back");
                let room = &mut *room;
                let local = local_state(room, self.store.instance());
                room.mirror.drift(&cell.id, || local);
                return;
            }
            room.mirror.settle();
            // The store answers again, and may have lost what the others wrote: from now
            // on they get one lease to write it again before what it lacks counts as gone.
            self.recover(cell, &mut room, Instant::now());
            let change = result.ok().flatten();
            // The store's numbering started again (it lost the room) when the register
            // came before what the mirror had seen; else a snapshot older than the
            // mirror is only a read that crossed newer changes.
            renumbered = change.as_ref().is_some_and(|c| c.version <= before);
            // Members that changed while the register was out stay to be written.
            let version = change.as_ref().map_or(0, |c| c.version);
            let instance = self.store.instance().clone();
            room.members.registered(&entries, version, |id, sent| {
                held(change.as_ref(), &instance, id, sent)
            });
        }
        let reason = if renumbered {
            Reason::Renumbered
        } else {
            Reason::Repaired
        };
        self.read(cell, reason).await;
        self.maybe_retire(cell);
    }

    /// Read the room from the store into the mirror.
    pub(super) async fn read(self: &Arc<Self>, cell: &Arc<RoomCell>, reason: Reason) {
        let _gate = cell.reads.lock().await;
        let result = self.store.snapshot(&cell.id).await;
        let mut room = cell.lock();
        let room = &mut *room;
        let state = match result {
            Ok(state) => state,
            Err(err) => {
                tracing::debug!(room = %cell.id, %err, "re-read failed; the store will be asked again when it is back");
                if room.mirror.roster().is_none() && !room.mirror.is_retired() {
                    // Never read: serve what this instance knows until the store is back.
                    let local = local_state(room, self.store.instance());
                    room.mirror.drift(&cell.id, || local);
                    self.changed(cell, room);
                }
                return;
            }
        };
        self.metrics.resyncs.fetch_add(1, Relaxed);
        let ours: Vec<Id> = room
            .members
            .iter()
            .filter(|(_, l)| l.is_stored())
            .map(|(id, _)| id.clone())
            .collect();
        let now = Instant::now();
        match room
            .mirror
            .read(&cell.id, state, reason, self.store.instance(), &ours, now)
        {
            Read::Replaced { renumbered } => {
                if renumbered {
                    room.peers.renumbered();
                }
                self.changed(cell, room);
            }
            Read::Repair => {
                tracing::info!(room = %cell.id, ?reason, "the store lost entries of this room: writing them again");
                self.lost(cell, room, now);
            }
            Read::Ignored => {}
        }
    }

    /// The store may have lost the room (it reconnected, or a read found our entries
    /// gone): until this instance has written all its entries again, its writes are shown
    /// here only (the mirror drifts), and other instances' entries are kept for a lease.
    pub(super) fn lost(self: &Arc<Self>, cell: &Arc<RoomCell>, room: &mut Room, now: Instant) {
        let local = local_state(room, self.store.instance());
        room.mirror.drift(&cell.id, || local);
        self.recover(cell, room, now);
        self.spawn_repair(cell);
    }

    /// Keep other instances' entries that the store lacks for a lease from `now`.
    pub(super) fn recover(self: &Arc<Self>, cell: &Arc<RoomCell>, room: &mut Room, now: Instant) {
        let until = now + self.settings.lease;
        room.mirror.recover(until);
        self.timers.add(until, Timer::Recovery(cell.clone()));
    }

    /// A recovery ran out: entries of other instances still only kept go.
    pub(super) fn end_recovery(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        let mut room = cell.lock();
        if room.mirror.end_recovery(Instant::now()) {
            tracing::info!(room = %cell.id, "entries of instances that did not come back within a lease removed");
            self.changed(cell, &mut room);
        }
    }

    pub(super) fn spawn_read(self: &Arc<Self>, cell: &Arc<RoomCell>, reason: Reason) {
        let (hub, cell) = (self.clone(), cell.clone());
        tokio::spawn(async move { hub.read(&cell, reason).await });
    }

    pub(super) fn spawn_repair(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        let (hub, cell) = (self.clone(), cell.clone());
        tokio::spawn(async move { hub.repair(&cell).await });
    }

    pub(super) fn spawn_write(self: &Arc<Self>, cell: &Arc<RoomCell>, id: &Id) {
        let (hub, cell, id) = (self.clone(), cell.clone(), id.clone());
        tokio::spawn(async move { hub.write(&cell, &id).await });
    }
}

/// This instance's entries as a room state (what to show while the store is away,
/// stamped by this instance's clock meanwhile).
fn local_state(room: &Room, instance: &InstanceId) -> RoomState {
    let now = now_ms();
    RoomState {
        version: 0,
        writers: Vec::new(),
        entries: room
            .members
            .iter()
            .filter_map(|(id, l)| {
                l.desired().map(|entry| Stamped {
                    instance: instance.clone(),
                    id: id.clone(),
                    entry: entry.stamped(now),
                    stamp: 0,
                })
            })
            .collect(),
    }
}

/// The entry the store holds for `id` after a write of `sent`: as `change` carries it,
/// stamped; `sent` itself when the change left it alone (it was equal already).
fn held(
    change: Option<&Change>,
    instance: &InstanceId,
    id: &Id,
    sent: &Option<Entry>,
) -> Option<Entry> {
    let sent = sent.as_ref()?;
    let stored = change
        .into_iter()
        .flat_map(|c| &c.ops)
        .find_map(|op| match op {
            Op::Upsert {
                instance: i,
                id: x,
                entry,
            } if i == instance && x == id => Some(entry.clone()),
            _ => None,
        });
    Some(stored.unwrap_or_else(|| sent.clone()))
}

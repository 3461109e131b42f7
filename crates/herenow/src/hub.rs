//! The sockets this process holds, per room, and everything that reaches them.
//!
//! For each room with local sockets the hub keeps:
//! - a mirror of the store's roster ([`Roster`]), advanced only in version order from the
//!   changes its own writes return and from the store's feed; a skipped version makes it
//!   re-read the room;
//! - this instance's own entries ([`Local`]): live tabs and tabs inside their grace
//!   window, per presence id. They are what the hub writes to the store, and what it
//!   re-registers after the store lost them;
//! - the changes not yet broadcast ([`Span`]) and a [`Throttle`]: a change goes out at
//!   once at human pace, merged with others in a storm, serialised once per broadcast.
//!
//! Writes of one room go through an async gate, one at a time, each sending the entry as
//! it is *now*: writes cannot overtake each other, and a burst collapses into fewer.
//! When the store fails, the hub applies the change to its mirror itself so local
//! sockets keep seeing each other, and repairs the store when it answers again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::ws::Text;
use tokio::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::{Kind, Outbox, Pushed};
use crate::protocol::{
    close, encode, ErrorCode, Id, Join, OutEvent, Presence, Proto, RawJson, Rejection, RoomEvent,
    RoomId, ServerMsg, UserHints,
};
use crate::rate::Throttle;
use crate::room::{Applied, Change, Entry, Op, RoomState, Roster, Span};
use crate::store::{Feed, FeedReceiver, PresenceStore, StoreEvent};

/// The hub's share of the configuration.
#[derive(Clone, Debug)]
pub struct HubSettings {
    pub grace: Duration,
    pub heartbeat: Duration,
    pub broadcast_burst: u32,
    pub broadcast_interval: Duration,
    pub max_room_members: usize,
}

impl HubSettings {
    pub fn from_config(c: &Config) -> HubSettings {
        HubSettings {
            grace: c.grace(),
            heartbeat: c.heartbeat(),
            broadcast_burst: c.broadcast_burst,
            broadcast_interval: c.broadcast_interval(),
            max_room_members: c.max_room_members,
        }
    }
}

/// How a socket leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// It may come back (reload, network blip): keep its tab for the grace window.
    Grace,
    /// Gone for good (client closed with 1000, stale, or misbehaving): leave at once.
    Now,
}

type SocketId = u64;

struct Peer {
    id: Id,
    proto: Proto,
    outbox: Arc<Outbox>,
    /// The room version this socket's client holds.
    known: u64,
    /// Waiting for a full roster once the mirror reaches this version.
    awaiting: Option<u64>,
}

/// This instance's entry for one presence id in one room.
struct Local {
    entry: Entry,
    live: u32,
    /// Deadlines of tabs that closed and may come back.
    grace: Vec<Instant>,
    /// What the store last accepted from us, so unchanged entries are not rewritten.
    stored: Option<Entry>,
}

impl Local {
    fn tabs(&self) -> u32 {
        self.live + self.grace.len() as u32
    }

    /// The entry the store should hold: none once every tab is gone.
    fn desired(&self) -> Option<Entry> {
        (self.tabs() > 0).then(|| Entry {
            tabs: self.tabs(),
            ..self.entry.clone()
        })
    }
}

/// Serialised rosters of the current version, shared by every socket that needs one.
#[derive(Default)]
struct Frames {
    version: u64,
    v1: Option<Text>,
    /// Protocol-2 snapshot without its closing brace, shared by every socket: each one's
    /// `self` ending goes out after it, as the message's last fragment.
    v2_prefix: Option<Bytes>,
}

struct Room {
    /// None until the first snapshot from the store.
    roster: Option<Roster>,
    /// Feed changes that arrived before the first snapshot.
    early: Vec<Change>,
    span: Span,
    throttle: Throttle,
    flush_pending: bool,
    peers: HashMap<SocketId, Peer>,
    local: HashMap<Id, Local>,
    frames: Frames,
    /// A store write failed: re-register this room's entries when the store answers.
    dirty: bool,
    /// The mirror version at which a heartbeat last found it behind the store.
    lag: Option<u64>,
    /// Removed from the hub: a join that raced with the removal must start over.
    retired: bool,
}

struct RoomCell {
    id: RoomId,
    state: Mutex<Room>,
    /// Serialises this instance's writes to the room (see the module doc).
    gate: tokio::sync::Mutex<()>,
}

impl RoomCell {
    fn lock(&self) -> MutexGuard<'_, Room> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Hub {
    settings: HubSettings,
    store: Arc<dyn PresenceStore>,
    rooms: Mutex<HashMap<RoomId, Arc<RoomCell>>>,
    metrics: Arc<Metrics>,
    next_socket: AtomicU64,
    draining: AtomicBool,
}

/// A socket's place in a room. Dropping it leaves the room (see [`Membership::set_leave`]).
pub struct Membership {
    hub: Arc<Hub>,
    cell: Arc<RoomCell>,
    socket: SocketId,
    id: Id,
    proto: Proto,
    leave: Leave,
}

impl Membership {
    pub fn id(&self) -> &Id {
        &self.id
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    pub fn room(&self) -> &RoomId {
        &self.cell.id
    }

    /// How the socket leaves when this is dropped (default [`Leave::Grace`]).
    pub fn set_leave(&mut self, leave: Leave) {
        self.leave = leave;
    }

    /// Replace this member's state and/or display hints.
    pub async fn update(&self, user: Option<UserHints>, state: Option<RawJson>) {
        {
            let mut room = self.cell.lock();
            let Some(local) = room.local.get_mut(&self.id) else {
                return;
            };
            if let Some(user) = user {
                local.entry.user = user;
            }
            if let Some(state) = state {
                local.entry.state = state;
            }
        }
        self.hub.write(&self.cell, &self.id).await;
    }

    /// Send an event to every other socket of the room, on every instance.
    pub async fn publish(&self, event: OutEvent) {
        let msg = RoomEvent {
            room_id: self.cell.id.clone(),
            from: self.id.clone(),
            event: event.event,
            data: event.data,
        };
        {
            let room = self.cell.lock();
            self.hub.deliver_event(&room, &msg, Some(self.socket));
        }
        let ev = StoreEvent {
            from: msg.from,
            event: msg.event,
            data: msg.data,
        };
        let started = std::time::Instant::now();
        let result = self.hub.store.publish(&self.cell.id, &ev).await;
        self.hub.store_done(started, result.is_ok());
    }

    /// Queue a full roster for this socket (the answer to `sync`).
    pub fn resend_snapshot(&self) {
        let mut room = self.cell.lock();
        if let Some(peer) = room.peers.get_mut(&self.socket) {
            peer.awaiting = Some(0);
        }
        serve_awaiting(&mut room);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub
            .leave(&self.cell, self.socket, &self.id, self.leave);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// A hub over `store`; starts its feed and heartbeat tasks on the current runtime.
    pub fn new(
        store: Arc<dyn PresenceStore>,
        settings: HubSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Hub> {
        let feed = store
            .take_feed()
            .expect("a store's feed is taken once, by its hub");
        let hub = Arc::new(Hub {
            settings,
            store,
            rooms: Mutex::default(),
            metrics,
            next_socket: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        });
        tokio::spawn(Arc::clone(&hub).run_feed(feed));
        tokio::spawn(Arc::clone(&hub).run_heartbeat());
        hub
    }

    pub fn store(&self) -> &Arc<dyn PresenceStore> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomId, Arc<RoomCell>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cells(&self) -> Vec<Arc<RoomCell>> {
        self.rooms().values().cloned().collect()
    }

    /// Rooms with sockets here, and their members on every instance.
    pub fn counts(&self) -> (usize, usize) {
        let cells = self.cells();
        let members = cells
            .iter()
            .map(|c| c.lock().roster.as_ref().map_or(0, Roster::len))
            .sum();
        (cells.len(), members)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    fn cell(&self, id: &RoomId) -> Arc<RoomCell> {
        let mut rooms = self.rooms();
        if let Some(cell) = rooms.get(id) {
            return cell.clone();
        }
        let now = Instant::now();
        let cell = Arc::new(RoomCell {
            id: id.clone(),
            state: Mutex::new(Room {
                roster: None,
                early: Vec::new(),
                span: Span::new(0),
                throttle: Throttle::new(
                    self.settings.broadcast_burst,
                    self.settings.broadcast_interval,
                    now,
                ),
                flush_pending: false,
                peers: HashMap::new(),
                local: HashMap::new(),
                frames: Frames::default(),
                dirty: false,
                lag: None,
                retired: false,
            }),
            gate: tokio::sync::Mutex::new(()),
        });
        rooms.insert(id.clone(), cell.clone());
        // Watch while holding the map lock, so watch and unwatch reach the store in the
        // order the room was created and retired.
        self.store.watch(id);
        cell
    }

    /// Join `room` with a validated hello. The socket's first roster is queued on its
    /// outbox as soon as the mirror includes the join.
    pub async fn join(
        self: &Arc<Self>,
        room_id: &RoomId,
        join: Join,
        outbox: Arc<Outbox>,
    ) -> Result<Membership, Rejection> {
        let socket = self.next_socket.fetch_add(1, Relaxed);
        let (cell, must_write) = loop {
            let cell = self.cell(room_id);
            let mut room = cell.lock();
            if room.retired {
                continue;
            }
            let known_here = room.local.contains_key(&join.id)
                || room
                    .roster
                    .as_ref()
                    .is_some_and(|r| r.user(&join.id).is_some());
            let size = room.roster.as_ref().map_or(room.local.len(), Roster::len);
            if !known_here && size >= self.settings.max_room_members {
                return Err(Rejection::new(
                    ErrorCode::RoomFull,
                    format!("room is full ({} members)", self.settings.max_room_members),
                ));
            }
            let local = room.local.entry(join.id.clone()).or_insert_with(|| Local {
                entry: Entry {
                    user: join.user.clone(),
                    state: join.state.clone(),
                    tabs: 0,
                    since: now_ms(),
                },
                live: 0,
                grace: Vec::new(),
                stored: None,
            });
            // A tab back within its grace window takes the old tab's place: no change.
            let reclaimed = match local.grace.iter().enumerate().min_by_key(|(_, d)| **d) {
                Some((i, _)) => {
                    local.grace.swap_remove(i);
                    true
                }
                None => false,
            };
            local.live += 1;
            // The newest tab's hints and state win, when it gives any.
            if join.user != UserHints::default() {
                local.entry.user = join.user.clone();
            }
            if join.state != RawJson::empty_object() {
                local.entry.state = join.state.clone();
            }
            let must_write = !reclaimed || local.desired() != local.stored;
            room.peers.insert(
                socket,
                Peer {
                    id: join.id.clone(),
                    proto: join.proto,
                    outbox: outbox.clone(),
                    known: 0,
                    // Until its write returns, the version that will include it is
                    // unknown: no broadcast may reach it before its first roster.
                    awaiting: Some(if must_write { u64::MAX } else { 0 }),
                },
            );
            serve_awaiting(&mut room);
            drop(room);
            break (cell, must_write);
        };
        let membership = Membership {
            hub: self.clone(),
            cell: cell.clone(),
            socket,
            id: join.id.clone(),
            proto: join.proto,
            leave: Leave::Grace,
        };
        if must_write {
            let version = self.write(&cell, &join.id).await;
            let mut room = cell.lock();
            if let Some(peer) = room.peers.get_mut(&socket) {
                peer.awaiting = Some(version);
            }
            serve_awaiting(&mut room);
        }
        Ok(membership)
    }

    fn leave(self: &Arc<Self>, cell: &Arc<RoomCell>, socket: SocketId, id: &Id, how: Leave) {
        let mut room = cell.lock();
        if room.peers.remove(&socket).is_none() {
            return;
        }
        if self.is_draining() {
            // Shutting down: the entries run out their lease in the store, so clients
            // reconnecting elsewhere within the grace window show no leave.
            return;
        }
        let Some(local) = room.local.get_mut(id) else {
            return;
        };
        local.live = local.live.saturating_sub(1);
        match how {
            Leave::Grace => {
                local.grace.push(Instant::now() + self.settings.grace);
                let (hub, cell, id) = (self.clone(), cell.clone(), id.clone());
                let grace = self.settings.grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    hub.expire_grace(&cell, &id).await;
                });
            }
            Leave::Now => {
                let (hub, cell, id) = (self.clone(), cell.clone(), id.clone());
                tokio::spawn(async move { hub.write(&cell, &id).await });
            }
        }
    }

    async fn expire_grace(self: &Arc<Self>, cell: &Arc<RoomCell>, id: &Id) {
        let expired = {
            let mut room = cell.lock();
            let now = Instant::now();
            room.local.get_mut(id).is_some_and(|local| {
                let before = local.grace.len();
                local.grace.retain(|d| *d > now);
                local.grace.len() != before
            })
        };
        if expired {
            self.write(cell, id).await;
        }
    }

    fn store_done(&self, started: std::time::Instant, ok: bool) {
        self.metrics.store_call(started.elapsed());
        if !ok {
            self.metrics.store_errors.fetch_add(1, Relaxed);
        }
    }

    /// Bring the store in line with this instance's entry for `id`. Returns the version
    /// that includes the write (0 when nothing needed writing).
    async fn write(self: &Arc<Self>, cell: &Arc<RoomCell>, id: &Id) -> u64 {
        let _gate = cell.gate.lock().await;
        let desired = {
            let room = cell.lock();
            if self.is_draining() {
                return 0;
            }
            match room.local.get(id) {
                Some(local) if local.desired() == local.stored => return 0,
                Some(local) => local.desired(),
                None => return 0,
            }
        };
        let started = std::time::Instant::now();
        let result = match &desired {
            Some(entry) => self.store.upsert(&cell.id, id, entry).await.map(Some),
            None => self.store.remove(&cell.id, id).await,
        };
        self.store_done(started, result.is_ok());
        let mut room = cell.lock();
        let version = match result {
            Ok(change) => {
                if let Some(local) = room.local.get_mut(id) {
                    local.stored = desired.clone();
                }
                match change {
                    Some(change) => {
                        let v = change.version;
                        self.apply(cell, &mut room, change, false);
                        v
                    }
                    None => 0,
                }
            }
            Err(err) => {
                if !room.dirty {
                    tracing::warn!(room = %cell.id, %err, "store write failed; serving the local roster until it is back");
                }
                room.dirty = true;
                // Keep local sockets seeing each other: apply the change to the mirror
                // ourselves. The repair re-registers and re-reads the room later.
                let op = match desired.clone() {
                    Some(entry) => Op::Upsert {
                        instance: self.store.instance().clone(),
                        id: id.clone(),
                        entry,
                    },
                    None => Op::Remove {
                        instance: self.store.instance().clone(),
                        id: id.clone(),
                    },
                };
                let roster = room
                    .roster
                    .get_or_insert_with(|| Roster::new(cell.id.clone()));
                let change = Change {
                    version: roster.version() + 1,
                    ops: vec![op],
                };
                let v = change.version;
                self.apply(cell, &mut room, change, false);
                v
            }
        };
        if desired.is_none() {
            if let Some(local) = room.local.get(id) {
                if local.tabs() == 0 {
                    room.local.remove(id);
                }
            }
        }
        drop(room);
        self.maybe_retire(cell);
        version
    }

    /// Drop a room with no sockets and no entries left, and stop watching it.
    fn maybe_retire(&self, cell: &Arc<RoomCell>) {
        let mut rooms = self.rooms();
        let mut room = cell.lock();
        if room.retired || !room.peers.is_empty() || !room.local.is_empty() {
            return;
        }
        if rooms.get(&cell.id).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            rooms.remove(&cell.id);
            room.retired = true;
            self.store.unwatch(&cell.id);
        }
    }

    /// Apply a store change to the mirror. `from_feed`: a gap means the feed lost
    /// something, so re-read; a write's own reply may run ahead of the feed, which will
    /// bring the versions in between.
    fn apply(
        self: &Arc<Self>,
        cell: &Arc<RoomCell>,
        room: &mut Room,
        change: Change,
        from_feed: bool,
    ) {
        let Some(roster) = room.roster.as_mut() else {
            room.early.push(change);
            return;
        };
        match roster.apply(&change, &mut room.span) {
            Applied::Applied => self.changed(cell, room),
            Applied::Stale => {}
            Applied::Gap if from_feed => self.spawn_resync(cell),
            Applied::Gap => {}
        }
    }

    /// The mirror moved: serve sockets waiting for a roster, then broadcast (now, or on
    /// the throttle's timer).
    fn changed(self: &Arc<Self>, cell: &Arc<RoomCell>, room: &mut Room) {
        room.lag = None;
        serve_awaiting(room);
        if room.span.is_empty() || room.flush_pending {
            return;
        }
        match room.throttle.on_change(Instant::now(), room.peers.len()) {
            None => self.flush(room),
            Some(at) => {
                room.flush_pending = true;
                let (hub, cell) = (self.clone(), cell.clone());
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let mut room = cell.lock();
                    room.flush_pending = false;
                    room.throttle.on_timer(Instant::now());
                    hub.flush(&mut room);
                });
            }
        }
    }

    /// Send the net diff since the last broadcast, serialised once.
    fn flush(&self, room: &mut Room) {
        let Some(roster) = room.roster.as_ref() else {
            return;
        };
        let Some(diff) = room.span.take(roster) else {
            return;
        };
        self.metrics.broadcasts.fetch_add(1, Relaxed);
        let members_changed = !diff.joined.is_empty() || !diff.left.is_empty();
        let (prev, version) = (diff.prev, diff.version);
        let mut diff_frame: Option<Text> = None;
        let mut diff_msg = Some(ServerMsg::Diff(diff));
        let (mut frames, mut bytes) = (0u64, 0u64);
        let Room {
            peers,
            frames: cache,
            roster,
            ..
        } = room;
        let roster = roster.as_ref().expect("checked above");
        for peer in peers.values_mut() {
            if peer.awaiting.is_some() || peer.known >= version {
                continue;
            }
            let frame = match peer.proto {
                Proto::V1 if !members_changed => {
                    peer.known = version;
                    continue;
                }
                Proto::V1 => v1_frame(cache, roster),
                Proto::V2 if peer.known == prev => diff_frame
                    .get_or_insert_with(|| encode(diff_msg.as_ref().expect("encoded once")).into())
                    .clone(),
                Proto::V2 => v2_frame(cache, roster, &peer.id),
            };
            peer.known = version;
            frames += 1;
            bytes += frame.len() as u64;
            if peer.outbox.push(frame, Kind::Roster) == Pushed::Overflow {
                peer.outbox.replace_rosters(full_frame(cache, roster, peer));
            }
        }
        diff_msg.take();
        self.metrics.sent(frames, bytes);
    }

    /// Queue an event for the room's protocol-2 sockets, but not `except`.
    fn deliver_event(&self, room: &Room, msg: &RoomEvent, except: Option<SocketId>) {
        let mut frame: Option<Text> = None;
        let (mut frames, mut bytes) = (0u64, 0u64);
        for (socket, peer) in &room.peers {
            if Some(*socket) == except || peer.proto != Proto::V2 {
                continue;
            }
            let f = frame
                .get_or_insert_with(|| encode(&ServerMsg::Event(msg.clone())).into())
                .clone();
            frames += 1;
            bytes += f.len() as u64;
            peer.outbox.push(f, Kind::Other);
        }
        self.metrics.sent(frames, bytes);
    }

    fn spawn_resync(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        let (hub, cell) = (self.clone(), cell.clone());
        tokio::spawn(async move { hub.resync(&cell).await });
    }

    /// Re-read the room from the store and replace the mirror with it.
    async fn resync(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        let started = std::time::Instant::now();
        let result = self.store.snapshot(&cell.id).await;
        self.store_done(started, result.is_ok());
        let state = match result {
            Ok(state) => state,
            Err(err) => {
                tracing::debug!(room = %cell.id, %err, "re-read failed; the store will ask again when it is back");
                let mut room = cell.lock();
                if room.roster.is_none() {
                    // Never read: serve what this instance knows until the store is back.
                    room.dirty = true;
                    let local = local_state(&room, self.store.instance());
                    room.roster = Some(Roster::from_state(cell.id.clone(), local));
                    self.changed(cell, &mut room);
                }
                return;
            }
        };
        self.metrics.resyncs.fetch_add(1, Relaxed);
        let mut room = cell.lock();
        let room = &mut *room;
        let version = state.version;
        match room.roster.as_mut() {
            Some(roster) if version < roster.version() => {
                // The store lost the room and counts again from below what clients
                // hold: a diff could not say that, so everyone gets a full roster.
                roster.replace(state, &mut room.span);
                room.span.reset(version);
                for peer in room.peers.values_mut() {
                    peer.awaiting = Some(0);
                }
            }
            Some(roster) => roster.replace(state, &mut room.span),
            None => {
                room.roster = Some(Roster::from_state(cell.id.clone(), state));
                room.span.reset(version);
            }
        }
        let early = std::mem::take(&mut room.early);
        let roster = room.roster.as_mut().expect("set above");
        for change in early {
            if change.version > version {
                let _ = roster.apply(&change, &mut room.span);
            }
        }
        self.changed(cell, room);
    }

    /// Make the store hold exactly this instance's entries of the room, then re-read it.
    async fn repair(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        {
            let _gate = cell.gate.lock().await;
            let entries: Vec<(Id, Entry)> = {
                let room = cell.lock();
                if self.is_draining() {
                    return;
                }
                room.local
                    .iter()
                    .filter_map(|(id, l)| l.desired().map(|e| (id.clone(), e)))
                    .collect()
            };
            let started = std::time::Instant::now();
            let result = self.store.register(&cell.id, &entries).await;
            self.store_done(started, result.is_ok());
            let mut room = cell.lock();
            match result {
                Ok(_) => {
                    room.dirty = false;
                    for local in room.local.values_mut() {
                        local.stored = local.desired();
                    }
                }
                Err(err) => {
                    tracing::debug!(room = %cell.id, %err, "re-register failed; retrying on the next heartbeat");
                    room.dirty = true;
                    return;
                }
            }
        }
        self.resync(cell).await;
    }

    async fn run_feed(self: Arc<Self>, mut feed: FeedReceiver) {
        while let Some(item) = feed.recv().await {
            match item {
                Feed::Change { room, change } => {
                    let Some(cell) = self.rooms().get(&room).cloned() else {
                        continue;
                    };
                    let mut guard = cell.lock();
                    self.apply(&cell, &mut guard, change, true);
                }
                Feed::Event { room, event } => {
                    let Some(cell) = self.rooms().get(&room).cloned() else {
                        continue;
                    };
                    let msg = RoomEvent {
                        room_id: room,
                        from: event.from,
                        event: event.event,
                        data: event.data,
                    };
                    self.deliver_event(&cell.lock(), &msg, None);
                }
                Feed::Resync { room } => {
                    if let Some(cell) = self.rooms().get(&room).cloned() {
                        self.spawn_resync(&cell);
                    }
                }
                Feed::Reconnected => {
                    tracing::info!("store is back: re-registering this instance's members");
                    for cell in self.cells() {
                        let hub = self.clone();
                        tokio::spawn(async move { hub.repair(&cell).await });
                    }
                }
            }
        }
    }

    async fn run_heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.is_draining() {
                return;
            }
            let cells: Vec<Arc<RoomCell>> = self
                .cells()
                .into_iter()
                .filter(|c| !c.lock().local.is_empty())
                .collect();
            if cells.is_empty() {
                continue;
            }
            let rooms: Vec<RoomId> = cells.iter().map(|c| c.id.clone()).collect();
            let started = std::time::Instant::now();
            let result = self.store.heartbeat(&rooms).await;
            self.store_done(started, result.is_ok());
            let Ok(versions) = result else {
                continue;
            };
            for (cell, (_, store_version)) in cells.iter().zip(versions) {
                let mut room = cell.lock();
                if room.dirty {
                    drop(room);
                    let (hub, cell) = (self.clone(), cell.clone());
                    tokio::spawn(async move { hub.repair(&cell).await });
                    continue;
                }
                let Some(mine) = room.roster.as_ref().map(Roster::version) else {
                    continue;
                };
                if mine == store_version {
                    room.lag = None;
                } else if room.lag == Some(mine) {
                    // Behind (or ahead) for a whole beat: a change was lost.
                    drop(room);
                    self.spawn_resync(cell);
                } else {
                    room.lag = Some(mine);
                }
            }
        }
    }

    /// The room as a protocol-2 snapshot without `self` (REST, server-side rendering).
    pub async fn snapshot(&self, room_id: &RoomId) -> Presence {
        if let Some(cell) = self.rooms().get(room_id).cloned() {
            if let Some(roster) = cell.lock().roster.as_ref() {
                return roster.presence(true);
            }
        }
        let state = self.store.snapshot(room_id).await.unwrap_or_default();
        Roster::from_state(room_id.clone(), state).presence(true)
    }

    /// Stop taking changes to the store and close every socket with 1012, so clients
    /// reconnect (elsewhere) while their entries run out the grace window.
    pub async fn drain(&self) {
        self.draining.store(true, Relaxed);
        for cell in self.cells() {
            let room = cell.lock();
            for peer in room.peers.values() {
                peer.outbox.close(close::RESTART, "server restarting");
            }
        }
        self.store.shutdown().await;
    }
}

/// This instance's entries as a room state (what to show while the store is away).
fn local_state(room: &Room, instance: &crate::room::InstanceId) -> RoomState {
    RoomState {
        version: 0,
        entries: room
            .local
            .iter()
            .filter_map(|(id, l)| {
                l.desired().map(|entry| crate::room::Stamped {
                    instance: instance.clone(),
                    id: id.clone(),
                    entry,
                    stamp: 0,
                })
            })
            .collect(),
    }
}

fn refresh_frames(cache: &mut Frames, roster: &Roster) {
    if cache.version != roster.version() {
        *cache = Frames {
            version: roster.version(),
            ..Frames::default()
        };
    }
}

fn v1_frame(cache: &mut Frames, roster: &Roster) -> Text {
    refresh_frames(cache, roster);
    cache
        .v1
        .get_or_insert_with(|| encode(&ServerMsg::Presence(roster.presence(false))).into())
        .clone()
}

fn v2_frame(cache: &mut Frames, roster: &Roster, self_id: &Id) -> Text {
    refresh_frames(cache, roster);
    let prefix = cache.v2_prefix.get_or_insert_with(|| {
        let mut json = encode(&ServerMsg::Presence(roster.presence(true)));
        json.pop(); // the closing brace: `self` goes last
        json.into()
    });
    let self_json = serde_json::to_string(&**self_id).expect("strings serialize");
    Text::with_tail(prefix.clone(), format!(",\"self\":{self_json}}}"))
}

fn full_frame(cache: &mut Frames, roster: &Roster, peer: &Peer) -> Text {
    match peer.proto {
        Proto::V1 => v1_frame(cache, roster),
        Proto::V2 => v2_frame(cache, roster, &peer.id),
    }
}

/// Send a full roster to every socket waiting for one the mirror now covers.
fn serve_awaiting(room: &mut Room) {
    let Room {
        peers,
        frames,
        roster,
        ..
    } = room;
    let Some(roster) = roster.as_ref() else {
        return;
    };
    for peer in peers.values_mut() {
        match peer.awaiting {
            Some(v) if v <= roster.version() => {
                let frame = full_frame(frames, roster, peer);
                peer.awaiting = None;
                peer.known = roster.version();
                if peer.outbox.push(frame.clone(), Kind::Roster) == Pushed::Overflow {
                    peer.outbox.replace_rosters(frame);
                }
            }
            _ => {}
        }
    }
}

//! The sockets this process holds, per room, and everything that reaches them.
//!
//! For each room with local sockets the hub keeps a [`Room`]:
//! - [`mirror`]: the store's roster as this instance knows it, advanced in version order,
//!   re-read when a version is missing, and kept steady through a store that lost its
//!   data;
//! - [`membership`]: this instance's own members, their tabs live or inside the grace
//!   window: what the hub writes to the store, and writes again after the store lost it;
//! - [`fanout`]: the room's sockets and what they are sent, paced by one frame budget
//!   for the whole instance.
//!
//! [`writer`] talks to the store for a room (writes, reads, repairs), and [`timers`] runs
//! every deadline (grace windows, merged flushes, recoveries) on one task. The store the
//! hub is given is wrapped in a [`MeteredStore`], so every store call is timed once.

mod fanout;
mod membership;
mod mirror;
mod timers;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use fanout::Budget;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::close::ServerClose;
use crate::protocol::{
    ErrorCode, Id, Join, Location, OutEvent, Presence, Proto, RawJson, Rejection, Role, RoomEvent,
    RoomId, Status, UserHints,
};
use crate::room::{Change, Roster};
use crate::store::metered::MeteredStore;
use crate::store::{Feed, FeedReceiver, PresenceStore, StoreEvent};
use fanout::{Peer, PeerState, Peers};
use membership::Members;
use mirror::{Beat, Mirror, Reason, Step};
use timers::{Timer, Timers};

/// The hub's share of the configuration.
#[derive(Clone, Debug)]
pub struct HubSettings {
    pub grace: Duration,
    pub heartbeat: Duration,
    /// How long another instance gets to write its entries again after the store lost
    /// them (its lease: it renews that often or is gone).
    pub lease: Duration,
    /// Frames this instance writes per interval before rooms merge their changes.
    pub broadcast_frames: u32,
    pub broadcast_interval: Duration,
    pub max_room_members: usize,
}

impl HubSettings {
    pub fn from_config(c: &Config) -> HubSettings {
        HubSettings {
            grace: c.grace(),
            heartbeat: c.heartbeat(),
            lease: c.lease(),
            broadcast_frames: c.broadcast_frames(),
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

/// Feed items taken at once at most: changes already waiting are applied together and
/// each room sent on once (bounded, so events and other rooms never wait long).
const FEED_BATCH: usize = 256;

struct Room {
    mirror: Mirror,
    peers: Peers,
    members: Members,
}

struct RoomCell {
    id: RoomId,
    state: Mutex<Room>,
    /// Serialises this instance's writes to the room (see `writer.rs`).
    writes: tokio::sync::Mutex<()>,
    /// Serialises reads of the room, so an older snapshot never replaces a newer one.
    reads: tokio::sync::Mutex<()>,
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
    budget: Budget,
    timers: Timers,
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
    role: Role,
    leave: Leave,
}

impl Membership {
    pub fn id(&self) -> &Id {
        &self.id
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn room(&self) -> &RoomId {
        &self.cell.id
    }

    /// How the socket leaves when this is dropped (default [`Leave::Grace`]).
    pub fn set_leave(&mut self, leave: Leave) {
        self.leave = leave;
    }

    /// Replace this member's state and/or display hints (a viewer has none).
    pub async fn update(&self, user: Option<UserHints>, state: Option<RawJson>) {
        self.change(|members| members.update(&self.id, user, state))
            .await;
    }

    /// This tab's status changed (a viewer's is nobody's business).
    pub async fn set_status(&self, status: Status) {
        self.change(|members| members.set_status(&self.id, self.socket, status))
            .await;
    }

    /// This tab moved to `location` (or nowhere in particular).
    pub async fn set_location(&self, location: Option<Location>) {
        self.change(|members| members.set_location(&self.id, self.socket, location))
            .await;
    }

    /// Change this member's bookkeeping, and write it when that says the store must know.
    async fn change(&self, change: impl FnOnce(&mut Members) -> bool) {
        let write = change(&mut self.cell.lock().members);
        if write {
            self.hub.write(&self.cell, &self.id).await;
        }
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
        if let Err(err) = self.hub.store.publish(&self.cell.id, &ev).await {
            tracing::debug!(room = %self.cell.id, %err, "event not published to other instances");
        }
    }

    /// Queue a full roster for this socket (the answer to `sync`).
    pub fn resend_snapshot(&self) {
        let mut room = self.cell.lock();
        room.peers.set_state(self.socket, PeerState::awaiting(0));
        self.hub.serve_waiting(&mut room);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub
            .leave(&self.cell, self.socket, &self.id, self.role, self.leave);
    }
}

/// This process's clock, ms since the Unix epoch: join times, and stamps while the store
/// is away.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// A hub over `store` (timed through a [`MeteredStore`]); starts its feed, heartbeat
    /// and timer tasks on the current runtime.
    pub fn new(
        store: Arc<dyn PresenceStore>,
        settings: HubSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Hub> {
        let store: Arc<dyn PresenceStore> = Arc::new(MeteredStore::new(store, metrics.clone()));
        let feed = store
            .take_feed()
            .expect("a store's feed is taken once, by its hub");
        let hub = Arc::new(Hub {
            budget: Budget::new(
                settings.broadcast_frames,
                settings.broadcast_interval,
                Instant::now(),
            ),
            settings,
            store,
            rooms: Mutex::default(),
            metrics,
            timers: Timers::default(),
            next_socket: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        });
        tokio::spawn(Arc::clone(&hub).run_feed(feed));
        tokio::spawn(Arc::clone(&hub).run_heartbeat());
        tokio::spawn(Arc::clone(&hub).run_timers());
        hub
    }

    /// The store, as the hub calls it (timed).
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

    fn held(&self, room: &RoomId) -> Option<Arc<RoomCell>> {
        self.rooms().get(room).cloned()
    }

    /// Rooms with sockets here, and their members on every instance.
    pub fn counts(&self) -> (usize, usize) {
        let cells = self.cells();
        let members = cells
            .iter()
            .map(|c| c.lock().mirror.roster().map_or(0, Roster::len))
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
        let cell = Arc::new(RoomCell {
            id: id.clone(),
            state: Mutex::new(Room {
                mirror: Mirror::new(),
                peers: Peers::default(),
                members: Members::default(),
            }),
            writes: tokio::sync::Mutex::new(()),
            reads: tokio::sync::Mutex::new(()),
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
            if room.mirror.is_retired() {
                continue;
            }
            let must_write = match join.role {
                Role::Viewer => false,
                Role::Member => {
                    let known_here = room.members.contains(&join.id)
                        || room
                            .mirror
                            .roster()
                            .is_some_and(|r| r.user(&join.id).is_some());
                    let size = room.mirror.roster().map_or(room.members.len(), Roster::len);
                    if !known_here && size >= self.settings.max_room_members {
                        return Err(Rejection::new(
                            ErrorCode::RoomFull,
                            format!("room is full ({} members)", self.settings.max_room_members),
                        ));
                    }
                    room.members.attach(&join, socket, now_ms())
                }
            };
            // Until its write returns, the version that will include it is unknown.
            let state = if must_write {
                PeerState::Joining
            } else {
                PeerState::awaiting(0)
            };
            room.peers.insert(
                socket,
                Peer::new(join.id.clone(), join.proto, outbox.clone(), state),
            );
            self.serve_waiting(&mut room);
            drop(room);
            break (cell, must_write);
        };
        let membership = Membership {
            hub: self.clone(),
            cell: cell.clone(),
            socket,
            id: join.id.clone(),
            proto: join.proto,
            role: join.role,
            leave: Leave::Grace,
        };
        if must_write {
            let version = self.write(&cell, &join.id).await;
            let mut room = cell.lock();
            room.peers
                .set_state(socket, PeerState::awaiting(version.unwrap_or(0)));
            self.serve_waiting(&mut room);
        }
        Ok(membership)
    }

    fn leave(
        self: &Arc<Self>,
        cell: &Arc<RoomCell>,
        socket: SocketId,
        id: &Id,
        role: Role,
        how: Leave,
    ) {
        let mut room = cell.lock();
        if room.peers.remove(socket).is_none() {
            return;
        }
        if self.is_draining() {
            // Shutting down: the entries run out their lease in the store, so clients
            // reconnecting elsewhere within the grace window show no leave.
            return;
        }
        if role == Role::Viewer {
            drop(room);
            self.maybe_retire(cell);
            return;
        }
        let until = Instant::now() + self.settings.grace;
        let write = room.members.detach(id, socket, how, until);
        drop(room);
        match how {
            Leave::Grace => self
                .timers
                .add(until, Timer::Grace(cell.clone(), id.clone())),
            Leave::Now if write => self.spawn_write(cell, id),
            Leave::Now => self.maybe_retire(cell),
        }
    }

    /// A grace window of `id` ended: its tab did not come back.
    async fn expire_grace(self: &Arc<Self>, cell: &Arc<RoomCell>, id: &Id) {
        let expired = cell.lock().members.expire(id, Instant::now());
        if expired {
            self.write(cell, id).await;
        }
    }

    /// Drop a room with no sockets and no entries left, and stop watching it.
    fn maybe_retire(&self, cell: &Arc<RoomCell>) {
        let mut rooms = self.rooms();
        let mut room = cell.lock();
        if room.mirror.is_retired() || !room.peers.is_empty() || !room.members.is_empty() {
            return;
        }
        if rooms.get(&cell.id).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            rooms.remove(&cell.id);
            room.mirror.retire();
            self.store.unwatch(&cell.id);
        }
    }

    /// Apply a store change to the mirror (see [`Mirror::apply`]); true when the mirror
    /// moved and the caller should send it on ([`Hub::changed`]).
    fn apply(
        self: &Arc<Self>,
        cell: &Arc<RoomCell>,
        room: &mut Room,
        change: Change,
        from_feed: bool,
    ) -> bool {
        match room.mirror.apply(change, from_feed) {
            Step::Changed => true,
            Step::Unchanged => false,
            Step::Reread => {
                self.spawn_read(cell, Reason::Gap);
                false
            }
        }
    }

    /// The store's feed: changes, events, resubscriptions, reconnects. Changes already
    /// waiting are applied together and each room is sent on once, so a room another
    /// instance changes in a burst costs its sockets one frame, not one per change.
    async fn run_feed(self: Arc<Self>, mut feed: FeedReceiver) {
        let mut batch = Vec::with_capacity(FEED_BATCH);
        while feed.recv_many(&mut batch, FEED_BATCH).await > 0 {
            let mut moved: Vec<Arc<RoomCell>> = Vec::new();
            for item in batch.drain(..) {
                self.take(item, &mut moved);
            }
            for cell in moved {
                self.changed(&cell, &mut cell.lock());
            }
        }
    }

    /// One feed item; a room whose mirror moved is added to `moved`.
    fn take(self: &Arc<Self>, item: Feed, moved: &mut Vec<Arc<RoomCell>>) {
        match item {
            Feed::Change { room, change } => {
                if let Some(cell) = self.held(&room) {
                    let changed = self.apply(&cell, &mut cell.lock(), change, true);
                    if changed && !moved.iter().any(|c| Arc::ptr_eq(c, &cell)) {
                        moved.push(cell);
                    }
                }
            }
            Feed::Event { room, event } => {
                if let Some(cell) = self.held(&room) {
                    let msg = RoomEvent {
                        room_id: room,
                        from: event.from,
                        event: event.event,
                        data: event.data,
                    };
                    let mut guard = cell.lock();
                    // The room's earlier changes go out first: an event never overtakes
                    // the join of the member who sent it.
                    if let Some(at) = moved.iter().position(|c| Arc::ptr_eq(c, &cell)) {
                        moved.swap_remove(at);
                        self.changed(&cell, &mut guard);
                    }
                    self.deliver_event(&guard, &msg, None);
                }
            }
            Feed::Resync { room } => {
                if let Some(cell) = self.held(&room) {
                    self.spawn_read(&cell, Reason::Subscribed);
                }
            }
            Feed::Reconnected => {
                tracing::info!("store is back: re-registering this instance's members");
                let now = Instant::now();
                for cell in self.cells() {
                    self.lost(&cell, &mut cell.lock(), now);
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
                .filter(|c| !c.lock().members.is_empty())
                .collect();
            if cells.is_empty() {
                continue;
            }
            let rooms: Vec<RoomId> = cells.iter().map(|c| c.id.clone()).collect();
            let sent = Instant::now();
            let Ok(versions) = self.store.heartbeat(&rooms).await else {
                continue;
            };
            for (cell, (_, store_version)) in cells.iter().zip(versions) {
                let mut room = cell.lock();
                match room.mirror.beat(store_version) {
                    Beat::InStep => {
                        room.peers.release_stuck(sent);
                        self.serve_waiting(&mut room);
                    }
                    Beat::Wait => {}
                    Beat::Reread => self.spawn_read(cell, Reason::Off),
                    Beat::Repair => self.spawn_repair(cell),
                }
            }
        }
    }

    /// The room as a protocol-2 snapshot without `self` (REST, server-side rendering).
    pub async fn snapshot(&self, room_id: &RoomId) -> Presence {
        if let Some(cell) = self.held(room_id) {
            if let Some(roster) = cell.lock().mirror.roster() {
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
            cell.lock().peers.close_all(ServerClose::Restart);
        }
        self.store.shutdown().await;
    }
}

//! This instance's own members of a room: per presence id, the tabs (sockets) it holds,
//! live or inside their grace window, and the entry the store should hold for them.
//!
//! A tab is a socket, keyed by the hello's id. A socket that closes without 1000 keeps
//! its slot for the grace window; one that comes back with the same tab id inside it
//! takes the slot over, so a reload is no change at all. A member's entry counts its
//! slots (`tabs`) and carries the hints and state the newest tab gave. Members whose
//! entry may differ from what the store holds are kept in a dirty set, so one write
//! carries every change made since the last (a burst of joins is one store call).
//!
//! Each slot also keeps what its tab says of itself: its status and its location. The
//! entry folds them (see [`Local::refold`]): the best status, and the location of the
//! most recently active tab, in this room's order of events. When the folded status
//! changes, or a tab shown becomes active or moves, the entry asks the store to stamp
//! the time ([`Stamp::Now`]), so `statusSince` and `activeAt` are the store's clock.
//! Pure bookkeeping: no store, no sockets, no clock of its own.

use std::collections::{HashMap, HashSet};

use tokio::time::Instant;

use super::{Leave, SocketId};
use crate::protocol::{Id, Join, Location, RawJson, Status, UserHints};
use crate::room::{Entry, Stamp};

/// Who holds a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// An open socket.
    Live(SocketId),
    /// A socket that closed and may come back until then.
    Grace(Instant),
}

#[derive(Clone, Debug)]
struct Slot {
    tab: Id,
    held: Held,
    /// What the tab last said of itself (kept through its grace window).
    status: Status,
    location: Option<Location>,
    /// When it last became or stopped being active, or moved while active, joined or
    /// came back, in the room's order of events ([`Members::tick`]).
    moment: u64,
}

impl Slot {
    /// The tab says it is `status`: a change from or to active is activity.
    fn set_status(&mut self, status: Status, moment: u64) -> bool {
        if self.status == status {
            return false;
        }
        if self.status == Status::Active || status == Status::Active {
            self.moment = moment;
        }
        self.status = status;
        true
    }

    /// The tab says it is at `location`: moving while active is activity.
    fn set_location(&mut self, location: Option<Location>, moment: u64) -> bool {
        if self.location == location {
            return false;
        }
        if self.status == Status::Active {
            self.moment = moment;
        }
        self.location = location;
        true
    }
}

/// One presence id of this instance in one room.
#[derive(Debug)]
pub(super) struct Local {
    /// Hints, state, arrival time and the fold of the tabs; `tabs` is filled in by
    /// [`Local::desired`].
    entry: Entry,
    slots: Vec<Slot>,
    /// What the store last accepted from us, so unchanged entries are not rewritten.
    stored: Option<Entry>,
    /// The store version of the change that last wrote it (0: never written).
    written: u64,
    /// The moment of the tab whose location the entry shows.
    shown: u64,
}

impl Local {
    /// The entry the store should hold: none once every slot is gone.
    pub(super) fn desired(&self) -> Option<Entry> {
        (!self.slots.is_empty()).then(|| Entry {
            tabs: self.slots.len() as u32,
            ..self.entry.clone()
        })
    }

    /// Does the store need a write to hold [`Local::desired`]?
    pub(super) fn needs_write(&self) -> bool {
        self.desired() != self.stored
    }

    /// The store accepted `sent` in `version` and holds it as `held` (stamped), or the
    /// removal (both `None`). Stamps still pending as they were sent become the store's
    /// time; one asked for since is a newer change and stays pending.
    pub(super) fn stored(&mut self, sent: Option<&Entry>, held: Option<Entry>, version: u64) {
        if let (Some(sent), Some(held)) = (sent, &held) {
            if self.entry.status_since == sent.status_since {
                self.entry.status_since = held.status_since;
            }
            if self.entry.active_at == sent.active_at {
                self.entry.active_at = held.active_at;
            }
        }
        self.stored = held;
        self.written = version;
    }

    /// The store version of the change that last wrote this entry.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    pub(super) fn is_stored(&self) -> bool {
        self.stored.is_some()
    }

    /// Folds the tabs into the entry: the best status, and the location of the tab
    /// active most recently (an active one first). A new status, or a newer moment of
    /// the tab shown, asks the store for a stamp (`request` tells the asks apart).
    fn refold(&mut self, request: u64) {
        let Some(status) = Status::best(self.slots.iter().map(|s| s.status)) else {
            return;
        };
        if status != self.entry.status {
            self.entry.status = status;
            self.entry.status_since = Stamp::Now(request);
        }
        let shown = self
            .slots
            .iter()
            .max_by_key(|s| (s.status == Status::Active, s.moment))
            .expect("a status means a slot");
        self.entry.location = shown.location.clone();
        // A tab shown because a more recent one closed keeps the time it had: nothing
        // happened in it since.
        if shown.moment > self.shown {
            self.shown = shown.moment;
            self.entry.active_at = Stamp::Now(request);
        }
    }
}

/// The members this instance holds in one room.
#[derive(Debug, Default)]
pub(super) struct Members {
    by_id: HashMap<Id, Local>,
    /// Ids whose entry may need writing.
    dirty: HashSet<Id>,
    /// Counts the room's tab events: orders tabs by recency, tells stamp requests apart.
    clock: u64,
}

impl Members {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(super) fn get(&self, id: &Id) -> Option<&Local> {
        self.by_id.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &Id) -> Option<&mut Local> {
        self.by_id.get_mut(id)
    }

    /// New hints and/or state from one of `id`'s tabs (none for an unknown id, such as
    /// a viewer's). Returns whether the store needs a write.
    pub(super) fn update(
        &mut self,
        id: &Id,
        user: Option<UserHints>,
        state: Option<RawJson>,
    ) -> bool {
        let Some(local) = self.by_id.get_mut(id) else {
            return false;
        };
        if let Some(user) = user {
            local.entry.user = user;
        }
        if let Some(state) = state {
            local.entry.state = state;
        }
        self.mark(id)
    }

    /// Note `id` for the next write if its entry needs one; returns whether it does.
    fn mark(&mut self, id: &Id) -> bool {
        let needs = self.by_id.get(id).is_some_and(Local::needs_write);
        if needs {
            self.dirty.insert(id.clone());
        }
        needs
    }

    /// A register of `entries` succeeded in `version`: each member still as registered
    /// is stored; one that changed meanwhile stays to be written. Gone members go.
    /// `held` says how the store holds a registered entry (stamped with its time).
    pub(super) fn registered(
        &mut self,
        entries: &[(Id, Option<Entry>)],
        version: u64,
        held: impl Fn(&Id, &Option<Entry>) -> Option<Entry>,
    ) {
        for (id, entry) in entries {
            let Some(local) = self.by_id.get_mut(id) else {
                continue;
            };
            if local.desired() == *entry {
                local.stored(entry.as_ref(), held(id, entry), version);
                self.dirty.remove(id);
            }
            self.prune(id);
        }
    }

    /// Every entry to write now, as `PresenceStore::write` takes them (the dirty set is
    /// empty afterwards).
    pub(super) fn take_dirty(&mut self) -> Vec<(Id, Option<crate::room::Entry>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|id| {
                let local = self.by_id.get(&id)?;
                local.needs_write().then(|| (id.clone(), local.desired()))
            })
            .collect()
    }

    pub(super) fn contains(&self, id: &Id) -> bool {
        self.by_id.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Id, &Local)> {
        self.by_id.iter()
    }

    /// Every entry the store should hold for this instance, as `register` takes them:
    /// with `None` for those the store holds (or held, before it lost its data) but
    /// should not any more.
    pub(super) fn to_register(&self) -> Vec<(Id, Option<Entry>)> {
        self.by_id
            .iter()
            .filter_map(|(id, l)| match l.desired() {
                Some(entry) => Some((id.clone(), Some(entry))),
                None => l.stored.is_some().then(|| (id.clone(), None)),
            })
            .collect()
    }

    /// `socket` joins as `join` says. A socket of a tab inside its grace window takes
    /// that tab's slot (the oldest one, if several); the newest tab's hints and state
    /// win when it gives any. Returns whether the store needs a write.
    pub(super) fn attach(&mut self, join: &Join, socket: SocketId, now_ms: u64) -> bool {
        let moment = self.tick();
        let local = self.by_id.entry(join.id.clone()).or_insert_with(|| Local {
            entry: Entry {
                verified: join.verified,
                ..Entry::new(join.user.clone(), join.state.clone(), now_ms)
            },
            // Most members have one tab: room for one, not the four a first push reserves.
            slots: Vec::with_capacity(1),
            stored: None,
            written: 0,
            shown: 0,
        });
        match local
            .slots
            .iter_mut()
            .filter(|s| s.tab == join.tab)
            .filter_map(|s| match s.held {
                Held::Grace(until) => Some((until, s)),
                Held::Live(_) => None,
            })
            .min_by_key(|(until, _)| *until)
        {
            // A reload: the tab says again how it is, and keeps its place until it says
            // where it is (a page that reloads finds its section after its hello), so a
            // reload that changes nothing is no change at all.
            Some((_, slot)) => {
                slot.held = Held::Live(socket);
                slot.set_status(join.status, moment);
                if join.location.is_some() {
                    slot.set_location(join.location.clone(), moment);
                }
            }
            // A new tab is activity: the one just opened is the one to show.
            None => local.slots.push(Slot {
                tab: join.tab.clone(),
                held: Held::Live(socket),
                status: join.status,
                location: join.location.clone(),
                moment,
            }),
        }
        local.refold(moment);
        if join.user != UserHints::default() {
            local.entry.user = join.user.clone();
        }
        if join.state != RawJson::empty_object() {
            local.entry.state = join.state.clone();
        }
        self.mark(&join.id)
    }

    /// `socket` of `id` is gone: its slot waits until `grace_until` for the tab to come
    /// back, or goes now. Returns whether the store needs a write now.
    pub(super) fn detach(
        &mut self,
        id: &Id,
        socket: SocketId,
        how: Leave,
        grace_until: Instant,
    ) -> bool {
        let Some(local) = self.by_id.get_mut(id) else {
            return false;
        };
        let Some(at) = local
            .slots
            .iter()
            .position(|s| s.held == Held::Live(socket))
        else {
            return false;
        };
        match how {
            Leave::Grace => {
                local.slots[at].held = Held::Grace(grace_until);
                false
            }
            Leave::Now => {
                local.slots.swap_remove(at);
                self.clock += 1;
                local.refold(self.clock);
                self.mark(id)
            }
        }
    }

    /// The tab of `socket` says it is `status` now. Returns whether the store needs a
    /// write.
    pub(super) fn set_status(&mut self, id: &Id, socket: SocketId, status: Status) -> bool {
        self.tab_says(id, socket, |slot, moment| slot.set_status(status, moment))
    }

    /// The tab of `socket` is at `location` now. Returns whether the store needs a write.
    pub(super) fn set_location(
        &mut self,
        id: &Id,
        socket: SocketId,
        location: Option<Location>,
    ) -> bool {
        self.tab_says(id, socket, |slot, moment| {
            slot.set_location(location, moment)
        })
    }

    /// Apply what the tab of `socket` says of itself (`change` tells whether anything
    /// changed) at the next moment, and refold its member if it did.
    fn tab_says(
        &mut self,
        id: &Id,
        socket: SocketId,
        change: impl FnOnce(&mut Slot, u64) -> bool,
    ) -> bool {
        let moment = self.clock + 1;
        let Some((local, slot)) = self.live(id, socket) else {
            return false;
        };
        if !change(&mut local.slots[slot], moment) {
            return false;
        }
        local.refold(moment);
        self.clock = moment;
        self.mark(id)
    }

    /// The member `id` and the index of the slot `socket` holds.
    fn live(&mut self, id: &Id, socket: SocketId) -> Option<(&mut Local, usize)> {
        let local = self.by_id.get_mut(id)?;
        let at = local
            .slots
            .iter()
            .position(|s| s.held == Held::Live(socket))?;
        Some((local, at))
    }

    /// Drop the slots of `id` whose grace window ended by `now`. Returns whether the
    /// store needs a write.
    pub(super) fn expire(&mut self, id: &Id, now: Instant) -> bool {
        let Some(local) = self.by_id.get_mut(id) else {
            return false;
        };
        let before = local.slots.len();
        local
            .slots
            .retain(|s| !matches!(s.held, Held::Grace(until) if until <= now));
        if local.slots.len() == before {
            return false;
        }
        self.clock += 1;
        local.refold(self.clock);
        self.mark(id)
    }

    /// Forget `id` once it has no slot and the store holds nothing of it.
    pub(super) fn prune(&mut self, id: &Id) {
        if self
            .by_id
            .get(id)
            .is_some_and(|l| l.slots.is_empty() && l.stored.is_none())
        {
            self.by_id.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Proto, Role};
    use std::time::Duration;

    fn join(id: &str, tab: &str) -> Join {
        Join {
            id: id.into(),
            tab: tab.into(),
            proto: Proto::V2,
            role: Role::Member,
            user: UserHints::default(),
            state: RawJson::empty_object(),
            verified: None,
            status: Status::Active,
            location: None,
        }
    }

    fn mark_stored(m: &mut Members, id: &str) {
        m.take_dirty();
        let local = m.get_mut(&Id::from(id)).unwrap();
        let desired = local.desired();
        let held = desired.clone().map(|e| e.stamped(1000));
        local.stored(desired.as_ref(), held, 1);
    }

    fn tabs(m: &Members, id: &str) -> u32 {
        m.get(&Id::from(id))
            .and_then(Local::desired)
            .map_or(0, |e| e.tabs)
    }

    #[test]
    fn a_reload_takes_its_own_slot_back() {
        let mut m = Members::default();
        let t0 = Instant::now();
        let grace = t0 + Duration::from_secs(3);
        assert!(m.attach(&join("u", "laptop"), 1, 10));
        mark_stored(&mut m, "u");
        assert!(
            m.attach(&join("u", "phone"), 2, 20),
            "a second tab is a write"
        );
        mark_stored(&mut m, "u");
        assert_eq!(tabs(&m, "u"), 2);
        // The laptop reloads: no write on leaving, none on coming back.
        assert!(!m.detach(&"u".into(), 1, Leave::Grace, grace));
        assert!(!m.attach(&join("u", "laptop"), 3, 30));
        assert_eq!(tabs(&m, "u"), 2);
        assert_eq!(m.get(&"u".into()).unwrap().entry.since, 10, "first arrival");
        // The phone goes for good; a new phone tab is a new slot.
        assert!(!m.detach(&"u".into(), 2, Leave::Grace, grace));
        assert!(m.attach(&join("u", "tablet"), 4, 40));
        mark_stored(&mut m, "u");
        assert_eq!(tabs(&m, "u"), 3, "the phone's slot waits out its grace");
        assert!(!m.expire(&"u".into(), t0), "not yet");
        assert!(m.expire(&"u".into(), grace));
        assert_eq!(tabs(&m, "u"), 2);
    }

    #[test]
    fn the_last_slot_leaving_now_removes_the_entry() {
        let mut m = Members::default();
        let t0 = Instant::now();
        m.attach(&join("a", "a"), 1, 1);
        mark_stored(&mut m, "a");
        assert!(m.detach(&"a".into(), 1, Leave::Now, t0));
        let local = m.get(&"a".into()).unwrap();
        assert_eq!(local.desired(), None);
        assert!(local.needs_write(), "the store still holds it");
        m.prune(&"a".into());
        assert!(m.contains(&"a".into()), "kept until the store forgot it");
        assert_eq!(m.take_dirty(), vec![(Id::from("a"), None)]);
        m.get_mut(&"a".into()).unwrap().stored(None, None, 2);
        m.prune(&"a".into());
        assert!(m.is_empty());
        // An unknown socket or id changes nothing.
        assert!(!m.detach(&"a".into(), 9, Leave::Now, t0));
    }

    fn entry(m: &Members, id: &str) -> Entry {
        m.get(&Id::from(id)).and_then(Local::desired).unwrap()
    }

    fn at(status: Status, location: Option<&str>) -> Join {
        Join {
            status,
            location: location.map(Location::from),
            ..join("u", "t")
        }
    }

    #[test]
    fn tab_statuses_fold_into_the_entry_active_first() {
        use Status::*;
        let mut m = Members::default();
        let u = Id::from("u");
        m.attach(&at(Away, None), 1, 10);
        assert_eq!(entry(&m, "u").status, Away, "the hello's status counts");
        m.attach(&at(Active, None), 2, 20);
        mark_stored(&mut m, "u");
        assert_eq!(
            entry(&m, "u").status,
            Active,
            "one active tab and one away: active"
        );
        assert!(!m.set_status(&u, 2, Active), "no change, no write");
        assert!(
            !m.set_status(&u, 1, Idle),
            "still active: the entry is unchanged"
        );
        assert!(m.set_status(&u, 2, Away));
        assert_eq!(entry(&m, "u").status, Idle);
        mark_stored(&mut m, "u");
        assert!(m.set_status(&u, 1, Away));
        assert_eq!(entry(&m, "u").status, Away, "both away: away");
        // Only an open socket of the member speaks for a tab.
        assert!(!m.set_status(&u, 9, Active));
        assert!(!m.set_status(&"nobody".into(), 1, Active));
        // The active tab leaving for good leaves the others' fold.
        m.set_status(&u, 2, Active);
        assert_eq!(entry(&m, "u").status, Active);
        m.detach(&u, 2, Leave::Now, Instant::now());
        assert_eq!(entry(&m, "u").status, Away);
    }

    #[test]
    fn a_new_status_asks_the_store_for_the_time_and_only_then() {
        use Status::*;
        let mut m = Members::default();
        let u = Id::from("u");
        m.attach(&at(Active, None), 1, 10);
        assert!(matches!(entry(&m, "u").status_since, Stamp::Now(_)));
        mark_stored(&mut m, "u");
        assert_eq!(
            entry(&m, "u").status_since,
            Stamp::At(1000),
            "the store's time"
        );
        // A second tab, idle: the member stays active since 1000.
        m.attach(
            &Join {
                tab: "t2".into(),
                ..at(Idle, None)
            },
            2,
            20,
        );
        assert_eq!(entry(&m, "u").status_since, Stamp::At(1000));
        mark_stored(&mut m, "u");
        m.set_status(&u, 1, Away);
        assert!(
            matches!(entry(&m, "u").status_since, Stamp::Now(_)),
            "active -> idle"
        );
    }

    #[test]
    fn a_stamp_asked_for_while_a_write_was_out_stays_asked_for() {
        use Status::*;
        let mut m = Members::default();
        let u = Id::from("u");
        m.attach(&at(Idle, None), 1, 10);
        let sent = entry(&m, "u");
        // While that write is out, the tab goes from idle to away: a newer status (and
        // no activity: the other stamp stays the one sent).
        m.set_status(&u, 1, Away);
        let held = sent.clone().stamped(500);
        m.get_mut(&u).unwrap().stored(Some(&sent), Some(held), 1);
        let now = entry(&m, "u");
        assert!(matches!(now.status_since, Stamp::Now(_)), "{now:?}");
        assert_eq!(
            now.active_at,
            Stamp::At(500),
            "that one was sent and stamped"
        );
        assert!(m.get(&u).unwrap().needs_write());
    }

    #[test]
    fn the_entry_shows_the_location_of_the_most_recently_active_tab() {
        use Status::*;
        let mut m = Members::default();
        let u = Id::from("u");
        let loc = |m: &Members| entry(m, "u").location.map(|l| l.to_string());
        m.attach(&at(Active, Some("intro")), 1, 10);
        m.attach(
            &Join {
                tab: "t2".into(),
                ..at(Active, Some("risks"))
            },
            2,
            20,
        );
        assert_eq!(loc(&m).as_deref(), Some("risks"), "the tab opened last");
        m.set_location(&u, 1, Some("goals".into()));
        assert_eq!(loc(&m).as_deref(), Some("goals"), "the tab that moved last");
        // An idle tab moving does not take over from an active one...
        m.set_status(&u, 2, Idle);
        m.set_location(&u, 2, Some("timeline".into()));
        assert_eq!(loc(&m).as_deref(), Some("goals"));
        // ...and when no tab is active, the one active last shows.
        m.set_status(&u, 1, Away);
        assert_eq!(loc(&m).as_deref(), Some("goals"));
        m.set_status(&u, 2, Active);
        assert_eq!(loc(&m).as_deref(), Some("timeline"));
        m.set_location(&u, 2, None);
        assert_eq!(loc(&m), None, "that tab is nowhere in particular now");
    }

    #[test]
    fn a_reload_that_says_the_same_is_no_change() {
        use Status::*;
        let mut m = Members::default();
        let u = Id::from("u");
        let grace = Instant::now() + Duration::from_secs(3);
        m.attach(&at(Active, Some("risks")), 1, 10);
        mark_stored(&mut m, "u");
        m.detach(&u, 1, Leave::Grace, grace);
        // The reloaded page has not found its section yet: it keeps its place.
        assert!(!m.attach(&at(Active, None), 2, 20));
        assert_eq!(entry(&m, "u").location.as_deref(), Some("risks"));
        // A reload that comes back hidden is a change.
        m.detach(&u, 2, Leave::Grace, grace);
        assert!(m.attach(&at(Away, None), 3, 30));
        assert_eq!(entry(&m, "u").status, Away);
    }
}

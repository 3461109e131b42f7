//! This instance's own members of a room: per presence id, the tabs (sockets) it holds,
//! live or inside their grace window, and the entry the store should hold for them.
//!
//! A tab is a socket, keyed by the hello's id. A socket that closes without 1000 keeps
//! its slot for the grace window; one that comes back with the same tab id inside it
//! takes the slot over, so a reload is no change at all. A member's entry counts its
//! slots (`tabs`) and carries the hints and state the newest tab gave. Members whose
//! entry may differ from what the store holds are kept in a dirty set, so one write
//! carries every change made since the last (a burst of joins is one store call). Pure
//! bookkeeping: no store, no sockets, no clock of its own.

use std::collections::{HashMap, HashSet};

use tokio::time::Instant;

use super::{Leave, SocketId};
use crate::protocol::{Id, Join, RawJson, UserHints};
use crate::room::Entry;

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
}

/// One presence id of this instance in one room.
#[derive(Debug)]
pub(super) struct Local {
    /// Hints, state and arrival time; `tabs` is filled in by [`Local::desired`].
    entry: Entry,
    slots: Vec<Slot>,
    /// What the store last accepted from us, so unchanged entries are not rewritten.
    stored: Option<Entry>,
    /// The store version of the change that last wrote it (0: never written).
    written: u64,
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

    /// The store accepted `entry` (or the removal, for `None`) in `version`.
    pub(super) fn stored(&mut self, entry: Option<Entry>, version: u64) {
        self.stored = entry;
        self.written = version;
    }

    /// The store version of the change that last wrote this entry.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    pub(super) fn is_stored(&self) -> bool {
        self.stored.is_some()
    }
}

/// The members this instance holds in one room.
#[derive(Debug, Default)]
pub(super) struct Members {
    by_id: HashMap<Id, Local>,
    /// Ids whose entry may need writing.
    dirty: HashSet<Id>,
}

impl Members {
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

    /// Every entry the store should hold for this instance, as `register` takes them.
    pub(super) fn desired(&self) -> Vec<(Id, Entry)> {
        self.by_id
            .iter()
            .filter_map(|(id, l)| l.desired().map(|e| (id.clone(), e)))
            .collect()
    }

    /// `socket` joins as `join` says. A socket of a tab inside its grace window takes
    /// that tab's slot (the oldest one, if several); the newest tab's hints and state
    /// win when it gives any. Returns whether the store needs a write.
    pub(super) fn attach(&mut self, join: &Join, socket: SocketId, now_ms: u64) -> bool {
        let local = self.by_id.entry(join.id.clone()).or_insert_with(|| Local {
            entry: Entry {
                user: join.user.clone(),
                state: join.state.clone(),
                tabs: 0,
                since: now_ms,
            },
            slots: Vec::new(),
            stored: None,
            written: 0,
        });
        let reclaimed = local
            .slots
            .iter_mut()
            .filter(|s| s.tab == join.tab)
            .filter_map(|s| match s.held {
                Held::Grace(until) => Some((until, s)),
                Held::Live(_) => None,
            })
            .min_by_key(|(until, _)| *until)
            .map(|(_, slot)| slot.held = Held::Live(socket))
            .is_some();
        if !reclaimed {
            local.slots.push(Slot {
                tab: join.tab.clone(),
                held: Held::Live(socket),
            });
        }
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
                self.mark(id)
            }
        }
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
        local.slots.len() != before && self.mark(id)
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
        }
    }

    fn mark_stored(m: &mut Members, id: &str) {
        m.take_dirty();
        let local = m.get_mut(&Id::from(id)).unwrap();
        let desired = local.desired();
        local.stored(desired, 1);
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
        m.get_mut(&"a".into()).unwrap().stored(None, 2);
        m.prune(&"a".into());
        assert!(m.is_empty());
        // An unknown socket or id changes nothing.
        assert!(!m.detach(&"a".into(), 9, Leave::Now, t0));
    }
}

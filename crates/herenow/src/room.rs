//! Pure roster logic: who is in a room, how it changes, and what clients are told.
//!
//! The store keeps one [`Entry`] per (instance, presence id): an instance writes only its
//! own entries, so a member whose tabs sit on two instances never vanishes when one of
//! them closes. Clients see the union, one [`User`] per presence id: tabs summed, the
//! earliest `since`, the hints and state of the most recently written entry, the best
//! status of any entry (active > idle > away) and the location of the most recently
//! active one (see [`fold`]). Times that compare entries of different instances
//! (`statusSince`, `activeAt`) are the store's, stamped by the store itself ([`Stamp`]),
//! so instances whose clocks disagree still agree on them.
//!
//! Every store change bumps the room's store version by one. A [`Roster`] applies changes
//! in that order and records, in a [`Span`], how each touched member looked before; a
//! span then yields the net [`Diff`] of any number of changes, so a merged broadcast
//! carries a storm of joins in one message.
//!
//! Clients see the roster's own version, which follows the store's one for one but never
//! goes down: after a store lost its data and counts again from 1, or after a change only
//! this instance made (while the store was away, or a kept entry expiring), it still
//! grows, so a client can always tell newer from older. No sockets, no clocks, no I/O: all of it
//! is tested directly, including a property test that the diff stream applied to the
//! first snapshot always reproduces the latest one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use serde::{Deserializer, Serializer};

use crate::protocol::{Diff, Id, Location, Presence, RawJson, RoomId, Status, User, UserHints};

/// The name of one server process in a shared store.
pub type InstanceId = Arc<str>;

/// A time by the store's clock, ms since the Unix epoch, or the request for one.
///
/// An instance writes [`Stamp::Now`] where it needs "the time of this write"; the store
/// puts its own time there as it stores the entry (the Redis scripts their server's
/// `TIME`, the memory store its process clock), so every instance reads the same number
/// whatever its own clock says. `Now` never reaches a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    At(u64),
    /// To be stamped on writing; the number only tells this instance's requests apart
    /// (a newer request is a newer change) and is not stored. Written as `"now"`.
    Now(u64),
}

impl Default for Stamp {
    /// Unknown: an entry written before stamps existed.
    fn default() -> Stamp {
        Stamp::At(0)
    }
}

impl Stamp {
    /// The time, once stamped.
    pub fn at(self) -> Option<u64> {
        match self {
            Stamp::At(t) => Some(t),
            Stamp::Now(_) => None,
        }
    }

    /// Stamped with `now` if still to be.
    pub fn or(self, now: u64) -> Stamp {
        Stamp::At(self.at().unwrap_or(now))
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Stamp::At(t) => s.serialize_u64(*t),
            Stamp::Now(_) => s.serialize_str("now"),
        }
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            At(u64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::At(t) => Ok(Stamp::At(t)),
            Raw::Word(w) if w == "now" => Ok(Stamp::Now(0)),
            Raw::Word(_) => Err(serde::de::Error::custom(
                "a stamp is a number of ms or \"now\"",
            )),
        }
    }
}

/// One instance's record of one member in a room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub user: UserHints,
    pub state: RawJson,
    /// Sockets of this id on that instance, including ones inside their grace window.
    pub tabs: u32,
    /// When this entry was first written, ms since the Unix epoch.
    pub since: u64,
    /// Whether a token vouches for this member (`None` with `AUTH=off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The best status of those tabs (entries from before statuses read as active).
    #[serde(default)]
    pub status: Status,
    /// The location of the most recently active of those tabs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// When `status` last changed (0: unknown, read as `since`).
    ///
    /// This and `active_at` must stay the last two fields: the Redis scripts stamp them
    /// in place at the end of the entry's JSON, where nothing a client sent can be.
    #[serde(default, rename = "statusSince")]
    pub status_since: Stamp,
    /// When the tab that gives `location` last became or stopped being active, or moved
    /// while active: how entries of one member on several instances are ordered.
    #[serde(default, rename = "activeAt")]
    pub active_at: Stamp,
}

impl Entry {
    /// A member's first entry: active, nowhere, stamps to be made by the store.
    pub fn new(user: UserHints, state: RawJson, since: u64) -> Entry {
        Entry {
            user,
            state,
            tabs: 0,
            since,
            verified: None,
            status: Status::Active,
            location: None,
            status_since: Stamp::Now(0),
            active_at: Stamp::Now(0),
        }
    }

    /// The entry as a store keeps it: its pending stamps made with `now` (ms by that
    /// store's clock).
    pub fn stamped(mut self, now: u64) -> Entry {
        self.status_since = self.status_since.or(now);
        self.active_at = self.active_at.or(now);
        self
    }

    /// When `status` began, as far as this entry knows. (A roster only holds stamped
    /// entries: the store stamps them, and the hub itself while the store is away.)
    fn status_began(&self) -> u64 {
        match self.status_since {
            Stamp::At(t) if t > 0 => t,
            _ => self.since,
        }
    }

    /// The key ordering entries by how recently they were active: active ones first.
    fn recency(&self) -> (bool, u64) {
        let at = match self.active_at {
            Stamp::At(t) => t,
            Stamp::Now(_) => u64::MAX,
        };
        (self.status == Status::Active, at)
    }
}

/// What a member shows of their entries' statuses and locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    pub status: Status,
    /// Since when `status` holds: while active, since the earliest of the active entries
    /// became active (any one of them active is enough); otherwise since the latest
    /// change of any entry (before it, some entry may have been better). Never more than
    /// the truth, so "away for 10 min" is never claimed of someone active 5 min ago.
    pub status_since: u64,
    /// The location of the most recently active entry.
    pub location: Option<Location>,
}

/// Folds one member's entries (each with the room version that wrote it, and its
/// instance, for a deterministic tie-break). The same rule folds a member's tabs into
/// one instance's entry, so folding tabs per instance and then across instances gives
/// what folding all tabs at once would. `None` for no entry.
pub fn fold<'a>(
    entries: impl IntoIterator<Item = (&'a Entry, u64, &'a InstanceId)>,
) -> Option<Folded> {
    let entries: Vec<_> = entries.into_iter().collect();
    let status = Status::best(entries.iter().map(|e| e.0.status))?;
    let began = |e: &&(&Entry, u64, &InstanceId)| e.0.status_began();
    let status_since = if status == Status::Active {
        entries
            .iter()
            .filter(|e| e.0.status == Status::Active)
            .map(|e| began(&e))
            .min()
    } else {
        entries.iter().map(|e| began(&e)).max()
    }
    .unwrap_or(0);
    let shown = entries
        .iter()
        .max_by(|a, b| (a.0.recency(), a.1, a.2).cmp(&(b.0.recency(), b.1, b.2)))?;
    Some(Folded {
        status,
        status_since,
        location: shown.0.location.clone(),
    })
}

/// An entry as the store holds it, with the room version that last wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub instance: InstanceId,
    pub id: Id,
    pub entry: Entry,
    pub stamp: u64,
}

/// One step of a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Write (insert or replace) `instance`'s entry for `id`.
    Upsert {
        instance: InstanceId,
        id: Id,
        entry: Entry,
    },
    /// Remove `instance`'s entry for `id` (absent entries are ignored).
    Remove { instance: InstanceId, id: Id },
}

/// What one store mutation did: the room went from `version - 1` to `version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub version: u64,
    pub ops: Vec<Op>,
}

/// A whole room as the store holds it. An unknown room is empty at version 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomState {
    pub version: u64,
    pub entries: Vec<Stamped>,
    /// Instances that wrote the room since it last appeared in the store (see
    /// `PresenceStore`): after a store lost its data, the others have not written their
    /// entries again yet.
    #[serde(default)]
    pub writers: Vec<InstanceId>,
}

/// How [`Roster::apply`] took a change.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// It was the next version and is now part of the roster.
    Applied,
    /// The roster already has it (an echo, or a duplicate): ignored.
    Stale,
    /// A version in between is missing: the caller must re-read the room.
    Gap,
}

#[derive(Clone, Debug)]
struct Member {
    /// (instance, entry, stamp), at most one per instance.
    entries: Vec<(InstanceId, Entry, u64)>,
    /// The merged view, rebuilt whenever an entry changes.
    user: Arc<User>,
}

impl Member {
    fn merge(id: &Id, entries: &[(InstanceId, Entry, u64)]) -> Arc<User> {
        let latest = entries
            .iter()
            .max_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)))
            .expect("a member has at least one entry");
        let folded = fold(entries.iter().map(|(i, e, stamp)| (e, *stamp, i)))
            .expect("a member has at least one entry");
        Arc::new(User {
            id: id.clone(),
            hints: latest.1.user.clone(),
            state: latest.1.state.clone(),
            tabs: entries.iter().map(|e| e.1.tabs).sum(),
            since: entries.iter().map(|e| e.1.since).min().unwrap_or(0),
            verified: latest.1.verified,
            status: folded.status,
            status_since: folded.status_since,
            location: folded.location,
        })
    }
}

/// A room's members at one version: this process's mirror of the store.
#[derive(Clone, Debug)]
pub struct Roster {
    room: RoomId,
    /// What clients are told: one more with every visible step, never less.
    version: u64,
    /// The store version applied last: store changes apply in this order.
    store_version: u64,
    members: HashMap<Id, Member>,
}

/// Entries of other instances that a [`Roster::replace`] kept although the store no
/// longer has them (see [`Keep::Others`]).
pub type Kept = Vec<(InstanceId, Id)>;

/// What [`Roster::replace`] does with entries the new state lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep<'a> {
    /// The state is the whole truth: drop them.
    Nothing,
    /// The store may have lost them (it restarted, or came back from an outage): keep the
    /// entries of every instance but this one that has not written the room again (is not
    /// one of the state's writers). This instance's own entries are its own to know.
    Others(&'a InstanceId),
}

impl Roster {
    pub fn new(room: RoomId) -> Roster {
        Roster {
            room,
            version: 0,
            store_version: 0,
            members: HashMap::new(),
        }
    }

    pub fn from_state(room: RoomId, state: RoomState) -> Roster {
        let mut roster = Roster::new(room);
        roster.replace(state, &mut Span::new(0), Keep::Nothing);
        roster
    }

    pub fn room(&self) -> &RoomId {
        &self.room
    }

    /// The version clients hold once told of this roster.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The store version this roster has applied.
    pub fn store_version(&self) -> u64 {
        self.store_version
    }

    /// Number of members (presence ids), not sockets.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn user(&self, id: &str) -> Option<&Arc<User>> {
        self.members.get(id).map(|m| &m.user)
    }

    /// Apply `change` if it is the next version, noting in `span` how touched members
    /// looked before.
    pub fn apply(&mut self, change: &Change, span: &mut Span) -> Applied {
        if change.version <= self.store_version {
            return Applied::Stale;
        }
        if change.version != self.store_version + 1 {
            return Applied::Gap;
        }
        self.apply_ops(&change.ops, change.version, span);
        self.store_version = change.version;
        self.version += 1;
        Applied::Applied
    }

    /// Apply ops the store has not made (it is away, or a kept entry ran out): one step
    /// for clients, none for the store version.
    pub fn apply_local(&mut self, ops: &[Op], span: &mut Span) {
        self.apply_ops(ops, self.store_version, span);
        self.version += 1;
    }

    fn apply_ops(&mut self, ops: &[Op], stamp: u64, span: &mut Span) {
        for op in ops {
            match op {
                Op::Upsert {
                    instance,
                    id,
                    entry,
                } => self.upsert(instance, id, entry.clone(), stamp, span),
                Op::Remove { instance, id } => self.remove(instance, id, span),
            }
        }
    }

    /// Does this roster hold `instance`'s entry for `id`?
    pub fn holds(&self, instance: &InstanceId, id: &Id) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| m.entries.iter().any(|e| e.0 == *instance))
    }

    fn upsert(
        &mut self,
        instance: &InstanceId,
        id: &Id,
        entry: Entry,
        stamp: u64,
        span: &mut Span,
    ) {
        span.note(id, self.user(id));
        let member = self.members.entry(id.clone());
        match member {
            std::collections::hash_map::Entry::Occupied(mut m) => {
                let m = m.get_mut();
                match m.entries.iter_mut().find(|e| e.0 == *instance) {
                    Some(slot) => *slot = (instance.clone(), entry, stamp),
                    None => m.entries.push((instance.clone(), entry, stamp)),
                }
                m.user = Member::merge(id, &m.entries);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let entries = vec![(instance.clone(), entry, stamp)];
                let user = Member::merge(id, &entries);
                v.insert(Member { entries, user });
            }
        }
    }

    fn remove(&mut self, instance: &InstanceId, id: &Id, span: &mut Span) {
        let Some(member) = self.members.get_mut(id) else {
            return;
        };
        let Some(at) = member.entries.iter().position(|e| e.0 == *instance) else {
            return;
        };
        span.note(id, Some(&member.user));
        member.entries.swap_remove(at);
        if member.entries.is_empty() {
            self.members.remove(id);
        } else {
            member.user = Member::merge(id, &member.entries);
        }
    }

    /// Replace everything with a state read from the store (on a gap, a resubscribe or a
    /// reconnect). The store version may even go down, after a store that lost its data;
    /// the client version still goes up when anything visible changed or the store
    /// version moved. Entries the state lacks are kept as `keep` says; the kept ones are
    /// returned.
    pub fn replace(&mut self, state: RoomState, span: &mut Span, keep: Keep<'_>) -> Kept {
        let mut grouped: HashMap<Id, Vec<(InstanceId, Entry, u64)>> = HashMap::new();
        for s in state.entries {
            grouped
                .entry(s.id)
                .or_default()
                .push((s.instance, s.entry, s.stamp));
        }
        let mut kept = Kept::new();
        if let Keep::Others(me) = keep {
            for (id, member) in &self.members {
                for (instance, entry, stamp) in &member.entries {
                    if instance == me || state.writers.contains(instance) {
                        continue;
                    }
                    let entries = grouped.entry(id.clone()).or_default();
                    if !entries.iter().any(|e| e.0 == *instance) {
                        entries.push((instance.clone(), entry.clone(), *stamp));
                        kept.push((instance.clone(), id.clone()));
                    }
                }
            }
        }
        let before = std::mem::take(&mut self.members);
        let mut changed = false;
        self.members = grouped
            .into_iter()
            .map(|(id, mut entries)| {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.dedup_by(|a, b| a.0 == b.0);
                let user = Member::merge(&id, &entries);
                let was = before.get(&id).map(|m| &m.user);
                if was != Some(&user) {
                    span.note(&id, was);
                    changed = true;
                }
                (id, Member { entries, user })
            })
            .collect();
        for (id, member) in &before {
            if !self.members.contains_key(id) {
                span.note(id, Some(&member.user));
                changed = true;
            }
        }
        if changed || state.version != self.store_version {
            let offset = self.version.saturating_sub(self.store_version);
            self.version = (state.version + offset).max(self.version + 1);
        }
        self.store_version = state.version;
        kept
    }

    /// Members in display order: by arrival, then id.
    pub fn users(&self) -> Vec<Arc<User>> {
        let mut users: Vec<Arc<User>> = self.members.values().map(|m| m.user.clone()).collect();
        users.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        users
    }

    /// The roster as a `presence` message: with `users` for protocol 2, without `self`.
    pub fn presence(&self, with_users: bool) -> Presence {
        let users = self.users();
        Presence {
            room_id: self.room.clone(),
            count: users.len(),
            members: users.iter().map(|u| u.id.clone()).collect(),
            version: self.version,
            users: with_users.then_some(users),
            self_id: None,
        }
    }

    /// Back to store form: what a snapshot of the store at this version holds.
    pub fn state(&self) -> RoomState {
        let mut entries: Vec<Stamped> = self
            .members
            .iter()
            .flat_map(|(id, m)| {
                m.entries.iter().map(|(instance, entry, stamp)| Stamped {
                    instance: instance.clone(),
                    id: id.clone(),
                    entry: entry.clone(),
                    stamp: *stamp,
                })
            })
            .collect();
        entries.sort_by(|a, b| (&a.id, &a.instance).cmp(&(&b.id, &b.instance)));
        RoomState {
            version: self.store_version,
            entries,
            writers: Vec::new(),
        }
    }
}

/// The changes not yet broadcast: the version clients were last told and how every
/// member touched since then looked at that version.
#[derive(Debug, Default)]
pub struct Span {
    prev: u64,
    before: HashMap<Id, Option<Arc<User>>>,
}

impl Span {
    pub fn new(prev: u64) -> Span {
        Span {
            prev,
            before: HashMap::new(),
        }
    }

    /// The version the next diff starts from.
    pub fn prev(&self) -> u64 {
        self.prev
    }

    pub fn is_empty(&self) -> bool {
        self.before.is_empty()
    }

    fn note(&mut self, id: &Id, current: Option<&Arc<User>>) {
        self.before
            .entry(id.clone())
            .or_insert_with(|| current.cloned());
    }

    /// The net diff from `prev` to the roster's version, and the span starts anew from
    /// there. When nothing visible changed (a join and its leave, a rewrite with equal
    /// values) there is nothing to send and the span keeps its `prev`, so clients that
    /// hold `prev` can still apply the next diff.
    pub fn take(&mut self, roster: &Roster) -> Option<Diff> {
        let mut joined = Vec::new();
        let mut left = Vec::new();
        let mut updated = Vec::new();
        for (id, before) in self.before.drain() {
            match (before, roster.user(&id)) {
                (None, Some(now)) => joined.push(now.clone()),
                (Some(_), None) => left.push(id),
                (Some(was), Some(now)) if was != *now => updated.push(now.clone()),
                _ => {}
            }
        }
        if joined.is_empty() && left.is_empty() && updated.is_empty() {
            return None;
        }
        joined.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        left.sort();
        updated.sort_by(|a, b| a.id.cmp(&b.id));
        let diff = Diff {
            room_id: roster.room.clone(),
            prev: self.prev,
            version: roster.version,
            joined,
            left,
            updated,
        };
        self.prev = roster.version;
        Some(diff)
    }

    /// Forget what was noted and start from `version` (after a snapshot was sent instead).
    pub fn reset(&mut self, version: u64) {
        self.before.clear();
        self.prev = version;
    }
}

/// What a protocol-2 client holds: the reference for how clients apply messages, used
/// by the tests (the TypeScript client's `applySnapshot` / `applyDiff` mirror it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientView {
    pub version: u64,
    pub users: BTreeMap<Id, Arc<User>>,
}

impl ClientView {
    /// A snapshot always replaces what the client held.
    pub fn apply_snapshot(&mut self, presence: &Presence) {
        self.version = presence.version;
        self.users = presence
            .users
            .iter()
            .flatten()
            .map(|u| (u.id.clone(), u.clone()))
            .collect();
    }

    /// Applies `diff` when it starts at the held version; `false` means "send sync".
    pub fn apply_diff(&mut self, diff: &Diff) -> bool {
        if diff.prev != self.version {
            return false;
        }
        for id in &diff.left {
            self.users.remove(id);
        }
        for user in diff.joined.iter().chain(&diff.updated) {
            self.users.insert(user.id.clone(), user.clone());
        }
        self.version = diff.version;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn room() -> RoomId {
        RoomId::parse_or_lobby("r")
    }

    fn entry(name: &str, tabs: u32, since: u64) -> Entry {
        let user = UserHints {
            name: Some(name.into()),
            ..Default::default()
        };
        Entry {
            tabs,
            ..Entry::new(user, RawJson::empty_object(), since).stamped(since)
        }
    }

    /// An entry in `status` since `status_since`, at `location`, last active at `active_at`.
    fn activity(status: Status, status_since: u64, location: &str, active_at: u64) -> Entry {
        Entry {
            status,
            status_since: Stamp::At(status_since),
            location: (!location.is_empty()).then(|| location.into()),
            active_at: Stamp::At(active_at),
            ..entry("X", 1, 1)
        }
    }

    fn folded(entries: &[Entry]) -> Folded {
        let instances: Vec<InstanceId> =
            (0..entries.len()).map(|i| format!("i{i}").into()).collect();
        fold(entries.iter().zip(&instances).map(|(e, i)| (e, 1, i))).unwrap()
    }

    #[test]
    fn statuses_fold_active_over_idle_over_away() {
        use Status::*;
        let f = |s: &[Status]| {
            let entries: Vec<Entry> = s.iter().map(|s| activity(*s, 10, "", 10)).collect();
            folded(&entries).status
        };
        assert_eq!(f(&[Away, Active]), Active, "one active tab is enough");
        assert_eq!(f(&[Away, Away]), Away);
        assert_eq!(f(&[Idle, Away]), Idle);
        assert_eq!(f(&[Away, Idle, Active]), Active);
        assert_eq!(f(&[Idle]), Idle);
        assert!(fold(std::iter::empty()).is_none());
        // An entry written before statuses existed counts as active, since it joined.
        let old: Entry = serde_json::from_str(r#"{"state":{},"tabs":1,"since":5}"#).unwrap();
        assert_eq!(
            folded(&[old, activity(Away, 9, "", 9)]),
            Folded {
                status: Active,
                status_since: 5,
                location: None
            }
        );
    }

    #[test]
    fn status_since_never_claims_more_than_the_truth() {
        use Status::*;
        // Active: since the earliest active entry became active; the away one is irrelevant.
        let f = folded(&[
            activity(Active, 300, "", 300),
            activity(Active, 100, "", 100),
            activity(Away, 50, "", 50),
        ]);
        assert_eq!((f.status, f.status_since), (Active, 100));
        // Not active: since the latest change anywhere (that tab may have been active until then).
        let f = folded(&[activity(Idle, 100, "", 100), activity(Away, 400, "", 400)]);
        assert_eq!((f.status, f.status_since), (Idle, 400));
        let f = folded(&[activity(Away, 100, "", 100), activity(Away, 250, "", 250)]);
        assert_eq!((f.status, f.status_since), (Away, 250));
    }

    #[test]
    fn the_location_is_the_most_recently_active_entrys() {
        use Status::*;
        // An active entry wins over one that was active later but is not now.
        let f = folded(&[
            activity(Idle, 1, "old", 900),
            activity(Active, 1, "here", 500),
        ]);
        assert_eq!(f.location.as_deref(), Some("here"));
        // Among active ones, the latest; among inactive ones too.
        let f = folded(&[activity(Active, 1, "a", 500), activity(Active, 1, "b", 600)]);
        assert_eq!(f.location.as_deref(), Some("b"));
        let f = folded(&[activity(Away, 1, "a", 700), activity(Idle, 1, "b", 600)]);
        assert_eq!(f.location.as_deref(), Some("a"));
        // The most recently active tab may be nowhere in particular.
        let f = folded(&[activity(Active, 1, "a", 500), activity(Active, 1, "", 600)]);
        assert_eq!(f.location, None);
    }

    #[test]
    fn a_member_shows_the_fold_of_its_entries_on_every_instance() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        r.apply(
            &up(1, "a", "x", activity(Status::Away, 100, "intro", 100)),
            &mut s,
        );
        r.apply(
            &up(2, "b", "x", activity(Status::Active, 200, "risks", 200)),
            &mut s,
        );
        let u = r.user("x").unwrap();
        assert_eq!(
            (u.status, u.status_since, u.location.as_deref()),
            (Status::Active, 200, Some("risks"))
        );
        // The active tab's instance goes: away, since that moment at the earliest.
        r.apply(&rm(3, "b", "x"), &mut s);
        let u = r.user("x").unwrap();
        assert_eq!(
            (u.status, u.location.as_deref()),
            (Status::Away, Some("intro"))
        );
        // A status change is an update, like any other change.
        let d = s.take(&r).unwrap();
        assert!(d.joined.len() == 1 && d.left.is_empty());
        r.apply(
            &up(4, "a", "x", activity(Status::Idle, 400, "intro", 400)),
            &mut s,
        );
        let d = s.take(&r).unwrap();
        assert_eq!(d.updated.len(), 1);
        assert_eq!(
            (d.updated[0].status, d.updated[0].status_since),
            (Status::Idle, 400)
        );
    }

    #[test]
    fn stamps_are_the_last_fields_and_now_until_a_store_stamps_them() {
        let e = Entry::new(UserHints::default(), RawJson::empty_object(), 7);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.ends_with(r#","statusSince":"now","activeAt":"now"}"#),
            "the Redis scripts stamp the end of the JSON: {json}"
        );
        let back: Entry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.status_since, Stamp::Now(0));
        let stamped = e.clone().stamped(1234);
        assert_eq!(
            (stamped.status_since, stamped.active_at),
            (Stamp::At(1234), Stamp::At(1234))
        );
        let json = serde_json::to_string(&Entry {
            location: Some("x".into()),
            ..stamped.clone()
        })
        .unwrap();
        assert!(
            json.ends_with(r#""location":"x","statusSince":1234,"activeAt":1234}"#),
            "{json}"
        );
        // Stamped stays stamped.
        assert_eq!(stamped.clone().stamped(9), stamped);
        assert!(serde_json::from_str::<Stamp>(r#""later""#).is_err());
    }

    fn up(version: u64, instance: &str, id: &str, e: Entry) -> Change {
        Change {
            version,
            ops: vec![Op::Upsert {
                instance: instance.into(),
                id: id.into(),
                entry: e,
            }],
        }
    }

    fn rm(version: u64, instance: &str, id: &str) -> Change {
        Change {
            version,
            ops: vec![Op::Remove {
                instance: instance.into(),
                id: id.into(),
            }],
        }
    }

    #[test]
    fn versions_apply_in_order_only() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        assert_eq!(
            r.apply(&up(2, "a", "x", entry("X", 1, 1)), &mut s),
            Applied::Gap
        );
        assert_eq!(
            r.apply(&up(1, "a", "x", entry("X", 1, 1)), &mut s),
            Applied::Applied
        );
        assert_eq!(
            r.apply(&up(1, "a", "x", entry("X", 1, 1)), &mut s),
            Applied::Stale
        );
        assert_eq!(r.version(), 1);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn tabs_on_two_instances_are_one_member() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        r.apply(&up(1, "a", "x", entry("Old", 2, 10)), &mut s);
        r.apply(&up(2, "b", "x", entry("New", 1, 20)), &mut s);
        let u = r.user("x").unwrap();
        assert_eq!((u.tabs, u.since), (3, 10));
        assert_eq!(u.hints.name.as_deref(), Some("New"), "latest write wins");
        let d = s.take(&r).unwrap();
        assert_eq!((d.prev, d.version, d.joined.len()), (0, 2, 1));

        // One instance's entry goes: the member stays, with fewer tabs.
        r.apply(&rm(3, "b", "x"), &mut s);
        let d = s.take(&r).unwrap();
        assert!(d.left.is_empty() && d.joined.is_empty());
        assert_eq!(d.updated[0].tabs, 2);
        assert_eq!(d.updated[0].hints.name.as_deref(), Some("Old"));
        r.apply(&rm(4, "a", "x"), &mut s);
        assert_eq!(s.take(&r).unwrap().left, vec![Id::from("x")]);
        assert!(r.is_empty());
    }

    #[test]
    fn net_effect_of_a_span() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        r.apply(&up(1, "a", "x", entry("X", 1, 1)), &mut s);
        s.take(&r).unwrap();
        // y joins and leaves, x leaves and comes back changed: x updated, nothing else.
        r.apply(&up(2, "a", "y", entry("Y", 1, 2)), &mut s);
        r.apply(&rm(3, "a", "y"), &mut s);
        r.apply(&rm(4, "a", "x"), &mut s);
        r.apply(&up(5, "a", "x", entry("X2", 1, 1)), &mut s);
        let d = s.take(&r).unwrap();
        assert_eq!((d.prev, d.version), (1, 5));
        assert!(d.joined.is_empty() && d.left.is_empty());
        assert_eq!(d.updated.len(), 1);
        // A span with no visible effect keeps its prev.
        r.apply(&up(6, "a", "z", entry("Z", 1, 3)), &mut s);
        r.apply(&rm(7, "a", "z"), &mut s);
        assert!(s.take(&r).is_none());
        assert_eq!(s.prev(), 5);
    }

    #[test]
    fn users_in_arrival_order_and_state_round_trip() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        r.apply(&up(1, "a", "late", entry("L", 1, 50)), &mut s);
        r.apply(&up(2, "a", "early", entry("E", 1, 10)), &mut s);
        r.apply(&up(3, "b", "early", entry("E", 1, 5)), &mut s);
        let p = r.presence(false);
        assert_eq!(p.members, vec![Id::from("early"), Id::from("late")]);
        assert_eq!((p.count, p.version), (2, 3));
        assert!(p.users.is_none());
        let copy = Roster::from_state(room(), r.state());
        assert_eq!(copy.users(), r.users());
        assert_eq!(copy.version(), 3);
    }

    #[test]
    fn replace_reports_the_difference() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        r.apply(&up(1, "a", "x", entry("X", 1, 1)), &mut s);
        r.apply(&up(2, "a", "y", entry("Y", 1, 1)), &mut s);
        s.take(&r);
        let mut truth = Roster::new(room());
        let mut ts = Span::new(0);
        truth.apply(&up(1, "a", "y", entry("Y2", 1, 1)), &mut ts);
        truth.apply(&up(2, "b", "z", entry("Z", 1, 1)), &mut ts);
        truth.apply(&up(3, "b", "w", entry("W", 1, 1)), &mut ts);
        r.replace(truth.state(), &mut s, Keep::Nothing);
        let d = s.take(&r).unwrap();
        assert_eq!((d.prev, d.version), (2, 3));
        assert_eq!(d.left, vec![Id::from("x")]);
        assert_eq!(d.joined.len(), 2);
        assert_eq!(d.updated[0].hints.name.as_deref(), Some("Y2"));
    }

    #[test]
    fn client_versions_never_go_down() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        for v in 1..=5 {
            r.apply(&up(v, "a", &format!("x{v}"), entry("X", 1, 1)), &mut s);
        }
        assert_eq!((r.version(), r.store_version()), (5, 5));
        // A change only this instance knows of: clients step, the store does not.
        r.apply_local(
            &[Op::Remove {
                instance: "a".into(),
                id: "x1".into(),
            }],
            &mut s,
        );
        assert_eq!((r.version(), r.store_version()), (6, 5));
        assert_eq!(
            r.apply(&up(6, "a", "y", entry("Y", 1, 1)), &mut s),
            Applied::Applied
        );
        assert_eq!((r.version(), r.store_version()), (7, 6));
        // The store lost the room and counts again from 1: clients still go up.
        let mut fresh = Roster::new(room());
        fresh.apply(&up(1, "a", "y", entry("Y", 1, 1)), &mut Span::new(0));
        r.replace(fresh.state(), &mut s, Keep::Nothing);
        assert_eq!((r.version(), r.store_version()), (8, 1));
        assert_eq!(
            r.apply(&up(2, "a", "z", entry("Z", 1, 1)), &mut s),
            Applied::Applied
        );
        assert_eq!(r.version(), 9);
        // Re-reading the same state changes nothing at all.
        r.replace(r.state(), &mut s, Keep::Nothing);
        assert_eq!((r.version(), r.store_version()), (9, 2));
    }

    #[test]
    fn a_replace_may_keep_the_entries_of_other_instances() {
        let mut r = Roster::new(room());
        let mut s = Span::new(0);
        r.apply(&up(1, "me", "mine", entry("M", 1, 1)), &mut s);
        r.apply(&up(2, "other", "theirs", entry("T", 1, 2)), &mut s);
        r.apply(&up(3, "me", "both", entry("B", 1, 3)), &mut s);
        r.apply(&up(4, "other", "both", entry("B", 2, 3)), &mut s);
        s.take(&r);
        // The store came back empty but for one entry of ours.
        let mut fresh = Roster::new(room());
        fresh.apply(&up(1, "me", "both", entry("B", 1, 3)), &mut Span::new(0));
        let kept = r.replace(fresh.state(), &mut s, Keep::Others(&"me".into()));
        let mut kept_ids: Vec<_> = kept.iter().map(|(i, id)| format!("{i}|{id}")).collect();
        kept_ids.sort();
        assert_eq!(kept_ids, ["other|both", "other|theirs"]);
        // Our own lost entry goes; the others stay as they were.
        let d = s.take(&r).unwrap();
        assert_eq!(d.left, vec![Id::from("mine")]);
        assert!(d.joined.is_empty() && d.updated.is_empty(), "{d:?}");
        assert_eq!(r.user("both").unwrap().tabs, 3);
        assert!(r.holds(&"other".into(), &"theirs".into()));
        // Their instance writes them again: nothing visible changes.
        r.apply(&up(2, "other", "theirs", entry("T", 1, 2)), &mut s);
        assert!(s.take(&r).is_none());
    }

    /// A random store mutation on a small space of instances and ids.
    #[derive(Clone, Debug)]
    enum Step {
        Up(u8, u8, u8, u8),
        Rm(u8, u8),
        Flush,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..3u8, 0..6u8, 1..4u8, 0..3u8).prop_map(|(i, x, t, n)| Step::Up(i, x, t, n)),
            3 => (0..3u8, 0..6u8).prop_map(|(i, x)| Step::Rm(i, x)),
            2 => Just(Step::Flush),
        ]
    }

    proptest! {
        /// Applying the diff stream to the first snapshot always equals the latest
        /// snapshot, whatever the changes and however they are batched into diffs.
        #[test]
        fn diff_stream_reproduces_the_latest_snapshot(
            prefix in proptest::collection::vec(step(), 0..20),
            steps in proptest::collection::vec(step(), 0..80),
        ) {
            let mut roster = Roster::new(room());
            let mut span = Span::new(0);
            let mut version = 0;
            let mut mutate = |roster: &mut Roster, span: &mut Span, s: &Step| -> Result<(), TestCaseError> {
                let change = match s {
                    Step::Up(i, x, t, n) => up(version + 1, &format!("i{i}"), &format!("x{x}"),
                        entry(&format!("n{n}"), u32::from(*t), u64::from(*x))),
                    Step::Rm(i, x) => rm(version + 1, &format!("i{i}"), &format!("x{x}")),
                    Step::Flush => return Ok(()),
                };
                version += 1;
                prop_assert_eq!(roster.apply(&change, span), Applied::Applied);
                Ok(())
            };
            for s in &prefix {
                mutate(&mut roster, &mut span, s)?;
            }
            // The client joins: first snapshot, and the span starts at its version.
            let mut client = ClientView::default();
            client.apply_snapshot(&roster.presence(true));
            span.reset(roster.version());
            for s in &steps {
                if let Step::Flush = s {
                    if let Some(diff) = span.take(&roster) {
                        prop_assert!(client.apply_diff(&diff));
                    }
                } else {
                    mutate(&mut roster, &mut span, s)?;
                }
            }
            if let Some(diff) = span.take(&roster) {
                prop_assert!(client.apply_diff(&diff));
            }
            let mut latest = ClientView::default();
            latest.apply_snapshot(&roster.presence(true));
            prop_assert_eq!(&client.users, &latest.users);
            // The client holds the version of the last diff; any later no-op changes are
            // still ahead of it, which is exactly what the next diff's prev will say.
            prop_assert_eq!(client.version, span.prev());
        }
    }
}

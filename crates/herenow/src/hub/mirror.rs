//! A room's mirror of the store: what this instance believes the room holds on every
//! instance, and how sure it is.
//!
//! The mirror follows the store in version order: changes come from this instance's own
//! writes (whose replies may run ahead of the feed) and from the store's feed (where a
//! skipped version means something was lost: re-read). A heartbeat that finds the
//! mirror behind the store for a whole beat re-reads it too.
//!
//! Two things make a re-read more than "replace everything":
//! - A store can lose its data (Redis restarted empty, a cluster node came back without
//!   its slots). Right after such a loss each instance writes its own entries again, one
//!   after the other: a re-read in between would show the members of the instances that
//!   have not written yet as gone. So for one lease after a reconnect (or a loss found by
//!   a re-read) the mirror keeps the entries of other instances the store lacks, until
//!   their instance writes them again, removes them, or the lease is over.
//! - This instance's own entries are its own to know: a re-read that lacks one of them
//!   means the store lost it, which is repaired (written again) before it is shown.
//!
//! No I/O here: the hub carries out what the mirror asks for (re-read, repair).

use std::collections::HashSet;

use tokio::time::Instant;

use crate::protocol::{Id, RoomId};
use crate::room::{Applied, Change, InstanceId, Keep, Op, RoomState, Roster, Span};

/// The roster clients are shown, and the changes not yet sent to them.
#[derive(Debug)]
pub(super) struct View {
    pub roster: Roster,
    pub span: Span,
    recovery: Option<Recovery>,
}

/// After a reconnect: until when, and which, entries of other instances are kept.
#[derive(Debug)]
struct Recovery {
    until: Instant,
    kept: HashSet<(InstanceId, Id)>,
}

impl View {
    fn new(roster: Roster) -> View {
        let span = Span::new(roster.version());
        View {
            roster,
            span,
            recovery: None,
        }
    }

    /// A change reached an entry: it is the store's again, not a kept one.
    fn touched(&mut self, ops: &[Op]) {
        if let Some(r) = self.recovery.as_mut() {
            for op in ops {
                let (Op::Upsert { instance, id, .. } | Op::Remove { instance, id }) = op;
                r.kept.remove(&(instance.clone(), id.clone()));
            }
        }
    }
}

/// A heartbeat found the mirror this far from the store, as many beats in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lag {
    InStep,
    /// The mirror was at this store version when a heartbeat found it off.
    Off(u64),
}

#[derive(Debug)]
pub(super) enum Mirror {
    /// Not read yet: changes from the feed wait here for the first snapshot.
    Unread { early: Vec<Change> },
    /// Following the store.
    Live { view: View, lag: Lag },
    /// The store failed a write or the first read: this instance's own changes are
    /// applied here by the hub, and the room is written again and re-read as soon as the
    /// store answers. Until then a re-read alone cannot be trusted.
    Adrift { view: View },
    /// The room left the hub; a join that raced with its removal starts over.
    Retired,
}

/// Why a room is read from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reason {
    /// The subscription is (again) active.
    Subscribed,
    /// The feed skipped a version.
    Gap,
    /// Heartbeats found the mirror off the store's version twice in a row.
    Off,
    /// This instance has just written all its entries again.
    Repaired,
    /// The same, and the store counts anew (it lost the room): the snapshot replaces the
    /// mirror even if its version is lower.
    Renumbered,
}

impl Reason {
    fn after_repair(self) -> bool {
        matches!(self, Reason::Repaired | Reason::Renumbered)
    }
}

/// What [`Mirror::read`] made of a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// The mirror holds the snapshot now; `renumbered`: the store's versions went down.
    Replaced { renumbered: bool },
    /// The store lost entries: write ours again, then read once more.
    Repair,
    /// Older than what the mirror holds already: a read that crossed newer changes.
    Ignored,
}

/// What [`Mirror::apply`] did with a change.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Changed,
    Unchanged,
    /// A version is missing: re-read the room.
    Reread,
}

/// What a heartbeat asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Beat {
    InStep,
    Wait,
    Reread,
    Repair,
}

impl Mirror {
    pub(super) fn new() -> Mirror {
        Mirror::Unread { early: Vec::new() }
    }

    pub(super) fn view_mut(&mut self) -> Option<&mut View> {
        match self {
            Mirror::Live { view, .. } | Mirror::Adrift { view } => Some(view),
            Mirror::Unread { .. } | Mirror::Retired => None,
        }
    }

    /// The roster, once there is one to show.
    pub(super) fn roster(&self) -> Option<&Roster> {
        match self {
            Mirror::Live { view, .. } | Mirror::Adrift { view } => Some(&view.roster),
            Mirror::Unread { .. } | Mirror::Retired => None,
        }
    }

    pub(super) fn is_retired(&self) -> bool {
        matches!(self, Mirror::Retired)
    }

    pub(super) fn is_adrift(&self) -> bool {
        matches!(self, Mirror::Adrift { .. })
    }

    pub(super) fn retire(&mut self) {
        *self = Mirror::Retired;
    }

    /// A store change: from the feed, where a gap means the feed lost something, or a
    /// write's own reply, which may run ahead of the feed (that brings the versions in
    /// between).
    pub(super) fn apply(&mut self, change: Change, from_feed: bool) -> Step {
        let (view, lag) = match self {
            Mirror::Unread { early } => {
                early.push(change);
                return Step::Unchanged;
            }
            Mirror::Retired => return Step::Unchanged,
            Mirror::Live { view, lag } => (view, Some(lag)),
            Mirror::Adrift { view } => (view, None),
        };
        match view.roster.apply(&change, &mut view.span) {
            Applied::Applied => {
                view.touched(&change.ops);
                if let Some(lag) = lag {
                    *lag = Lag::InStep;
                }
                Step::Changed
            }
            Applied::Stale => Step::Unchanged,
            Applied::Gap if from_feed && lag.is_some() => Step::Reread,
            Applied::Gap => Step::Unchanged,
        }
    }

    /// The store failed: from now on the hub applies this instance's changes here.
    /// `local` is what to show when nothing was read yet: this instance's own entries.
    pub(super) fn drift(&mut self, room: &RoomId, local: impl FnOnce() -> RoomState) {
        *self = match std::mem::replace(self, Mirror::Retired) {
            Mirror::Unread { .. } => Mirror::Adrift {
                view: View::new(Roster::from_state(room.clone(), local())),
            },
            Mirror::Live { view, .. } | Mirror::Adrift { view } => Mirror::Adrift { view },
            Mirror::Retired => Mirror::Retired,
        };
    }

    /// This instance's entries are all in the store again: writes may go to it once
    /// more, and re-reads can be trusted (a read still follows, to show the others').
    pub(super) fn settle(&mut self) {
        if let Mirror::Adrift { .. } = self {
            let Mirror::Adrift { view } = std::mem::replace(self, Mirror::Retired) else {
                unreachable!("matched above")
            };
            *self = Mirror::Live {
                view,
                lag: Lag::InStep,
            };
        }
    }

    /// Apply ops the store did not make (it is away): one step for clients.
    pub(super) fn apply_local(&mut self, ops: &[Op]) {
        if let Some(view) = self.view_mut() {
            view.roster.apply_local(ops, &mut view.span);
        }
    }

    /// The store may have lost its data: until `until`, a re-read keeps the entries of
    /// other instances that it lacks.
    pub(super) fn recover(&mut self, until: Instant) {
        if let Some(view) = self.view_mut() {
            match view.recovery.as_mut() {
                Some(r) => r.until = r.until.max(until),
                None => {
                    view.recovery = Some(Recovery {
                        until,
                        kept: HashSet::new(),
                    })
                }
            }
        }
    }

    /// The end of a recovery: entries still kept were not written again by their
    /// instance within a lease, so that instance is gone. True when that changed the
    /// roster.
    pub(super) fn end_recovery(&mut self, now: Instant) -> bool {
        let Some(view) = self.view_mut() else {
            return false;
        };
        let Some(r) = view.recovery.as_ref() else {
            return false;
        };
        if now < r.until {
            return false;
        }
        let kept = view.recovery.take().expect("checked above").kept;
        let ops: Vec<Op> = kept
            .into_iter()
            .filter(|(instance, id)| view.roster.holds(instance, id))
            .map(|(instance, id)| Op::Remove { instance, id })
            .collect();
        if ops.is_empty() {
            return false;
        }
        view.roster.apply_local(&ops, &mut view.span);
        true
    }

    /// A snapshot read for `reason`. `me` is this instance; `ours` the ids whose entries
    /// this instance believes the store holds.
    pub(super) fn read(
        &mut self,
        room: &RoomId,
        state: RoomState,
        reason: Reason,
        me: &InstanceId,
        ours: &[Id],
        now: Instant,
    ) -> Read {
        let view = match self {
            Mirror::Retired => return Read::Ignored,
            Mirror::Unread { early } => {
                let version = state.version;
                let mut view = View::new(Roster::from_state(room.clone(), state));
                for change in std::mem::take(early) {
                    if change.version > version {
                        let _ = view.roster.apply(&change, &mut view.span);
                    }
                }
                *self = Mirror::Live {
                    view,
                    lag: Lag::InStep,
                };
                return Read::Replaced { renumbered: false };
            }
            Mirror::Adrift { .. } if !reason.after_repair() => return Read::Repair,
            Mirror::Live { view, .. } | Mirror::Adrift { view } => view,
        };
        if reason == Reason::Repaired && state.version < view.roster.store_version() {
            // A read that crossed changes the mirror has already applied.
            return Read::Ignored;
        }
        if !reason.after_repair() {
            if state.version < view.roster.store_version() {
                // Older than the mirror: either a read that crossed newer changes, or,
                // when the heartbeats say the store is behind, a store that lost them.
                return if reason == Reason::Off {
                    Read::Repair
                } else {
                    Read::Ignored
                };
            }
            let held: HashSet<&Id> = state
                .entries
                .iter()
                .filter(|s| s.instance == *me)
                .map(|s| &s.id)
                .collect();
            if ours.iter().any(|id| !held.contains(id)) {
                return Read::Repair;
            }
        }
        let keep = match &view.recovery {
            Some(r) if now < r.until => Keep::Others(me),
            _ => Keep::Nothing,
        };
        let renumbered = state.version < view.roster.store_version();
        let kept = view.roster.replace(state, &mut view.span, keep);
        if let Some(r) = view.recovery.as_mut() {
            r.kept = kept.into_iter().collect();
        }
        let view = match std::mem::replace(self, Mirror::Retired) {
            Mirror::Live { view, .. } | Mirror::Adrift { view } => view,
            _ => unreachable!("matched above"),
        };
        *self = Mirror::Live {
            view,
            lag: Lag::InStep,
        };
        Read::Replaced { renumbered }
    }

    /// A heartbeat found the store's room at `store_version`.
    pub(super) fn beat(&mut self, store_version: u64) -> Beat {
        match self {
            Mirror::Unread { .. } => Beat::Reread,
            Mirror::Adrift { .. } => Beat::Repair,
            Mirror::Retired => Beat::InStep,
            Mirror::Live { view, lag } => {
                let mine = view.roster.store_version();
                if mine == store_version {
                    *lag = Lag::InStep;
                    Beat::InStep
                } else if *lag == Lag::Off(mine) {
                    // Off for a whole beat: a change was lost, or the store lost the room.
                    Beat::Reread
                } else {
                    *lag = Lag::Off(mine);
                    Beat::Wait
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{RawJson, UserHints};
    use crate::room::{Entry, Stamped};
    use std::time::Duration;

    fn room() -> RoomId {
        RoomId::parse_or_lobby("r")
    }

    fn entry(tabs: u32) -> Entry {
        Entry {
            tabs,
            verified: None,
            ..Entry::new(UserHints::default(), RawJson::empty_object(), 1).stamped(1)
        }
    }

    fn stamped(instance: &str, id: &str, stamp: u64) -> Stamped {
        Stamped {
            instance: instance.into(),
            id: id.into(),
            entry: entry(1),
            stamp,
        }
    }

    fn state(version: u64, entries: &[(&str, &str)]) -> RoomState {
        RoomState {
            version,
            entries: entries
                .iter()
                .enumerate()
                .map(|(i, (inst, id))| stamped(inst, id, i as u64 + 1))
                .collect(),
            writers: Vec::new(),
        }
    }

    fn up(version: u64, instance: &str, id: &str) -> Change {
        Change {
            version,
            ops: vec![Op::Upsert {
                instance: instance.into(),
                id: id.into(),
                entry: entry(1),
            }],
        }
    }

    fn ids(m: &Mirror) -> Vec<String> {
        let mut ids: Vec<String> = m
            .roster()
            .unwrap()
            .users()
            .iter()
            .map(|u| u.id.to_string())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn changes_before_the_first_read_wait_for_it() {
        let mut m = Mirror::new();
        let me: InstanceId = "a".into();
        assert_eq!(m.apply(up(3, "b", "late"), true), Step::Unchanged);
        let read = m.read(
            &room(),
            state(2, &[("b", "x"), ("a", "y")]),
            Reason::Subscribed,
            &me,
            &[],
            Instant::now(),
        );
        assert_eq!(read, Read::Replaced { renumbered: false });
        assert_eq!(ids(&m), ["late", "x", "y"]);
        assert_eq!(m.apply(up(5, "b", "z"), true), Step::Reread, "4 is missing");
        assert_eq!(
            m.apply(up(5, "b", "z"), false),
            Step::Unchanged,
            "a reply may run ahead"
        );
    }

    #[test]
    fn a_store_that_lost_its_data_shows_no_departure() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(6);
        let me: InstanceId = "a".into();
        let mut m = Mirror::new();
        let full = state(40, &[("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")]);
        m.read(&room(), full, Reason::Subscribed, &me, &[], t0);
        let ours = [Id::from("a1"), Id::from("a2")];

        // Redis restarted empty. A plain re-read that lacks our entries is not shown:
        // ours are written again first.
        let empty = state(0, &[]);
        assert_eq!(
            m.read(&room(), empty, Reason::Off, &me, &ours, t0),
            Read::Repair
        );
        m.recover(t0 + lease);
        // Ours are back; b has not written yet: its members stay.
        let ours_only = state(1, &[("a", "a1"), ("a", "a2")]);
        let read = m.read(&room(), ours_only, Reason::Renumbered, &me, &ours, t0);
        assert_eq!(read, Read::Replaced { renumbered: true });
        assert_eq!(ids(&m), ["a1", "a2", "b1", "b2"]);
        let view = m.view_mut().unwrap();
        assert!(
            view.span.take(&view.roster).is_none(),
            "nothing visible changed"
        );

        // b writes b1 again; b2's tab had left meanwhile, so b never writes it.
        let mut b1 = up(2, "b", "b1");
        b1.ops.push(Op::Upsert {
            instance: "b".into(),
            id: "b1x".into(),
            entry: entry(1),
        });
        assert_eq!(m.apply(b1, true), Step::Changed);
        assert!(!m.end_recovery(t0 + lease - Duration::from_millis(1)));
        assert_eq!(ids(&m), ["a1", "a2", "b1", "b1x", "b2"]);
        // A lease later, b2 goes.
        assert!(m.end_recovery(t0 + lease));
        assert_eq!(ids(&m), ["a1", "a2", "b1", "b1x"]);
        let version = m.roster().unwrap().version();
        assert!(version > 40, "clients' versions never go down: {version}");
    }

    #[test]
    fn a_stale_read_is_ignored_and_a_heartbeat_gap_rereads() {
        let me: InstanceId = "a".into();
        let now = Instant::now();
        let mut m = Mirror::new();
        m.read(
            &room(),
            state(5, &[("b", "x")]),
            Reason::Subscribed,
            &me,
            &[],
            now,
        );
        assert_eq!(m.apply(up(6, "b", "y"), true), Step::Changed);
        // A read sent before 6 arrives after it.
        let old = state(5, &[("b", "x")]);
        assert_eq!(
            m.read(&room(), old, Reason::Gap, &me, &[], now),
            Read::Ignored
        );
        assert_eq!(ids(&m), ["x", "y"]);
        assert_eq!(m.beat(6), Beat::InStep);
        assert_eq!(m.beat(7), Beat::Wait);
        assert_eq!(m.beat(7), Beat::Reread);
        // Adrift, a plain read cannot be trusted; a repaired one can.
        m.drift(&room(), RoomState::default);
        assert_eq!(m.beat(7), Beat::Repair);
        let fresh = state(7, &[("b", "x")]);
        assert_eq!(
            m.read(&room(), fresh, Reason::Subscribed, &me, &[], now),
            Read::Repair
        );
        let fresh = state(7, &[("b", "x")]);
        let read = m.read(&room(), fresh, Reason::Repaired, &me, &[], now);
        assert_eq!(read, Read::Replaced { renumbered: false });
        assert_eq!(ids(&m), ["x"]);
    }
}

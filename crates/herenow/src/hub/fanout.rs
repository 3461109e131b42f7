//! Fan-out: a room's sockets on this instance and what reaches them, paced by one
//! budget for the whole instance.
//!
//! Every roster is serialised once per room and version and shared by every socket that
//! gets it (protocol-2 snapshots down to the last fragment, where each socket's own
//! `"self"` goes). A change goes out at once while the instance has [`Budget`] left in
//! the current interval: at human pace, and for a meeting that starts, nobody waits.
//! Only when the instance has written its budget's worth of frames in the interval do
//! rooms switch to merging: each room's changes then go out as one net diff when the
//! interval ends, so a storm of N joins costs about N frames per socket's interval, not
//! N² frames.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Hub, Room, RoomCell, SocketId, Timer};
use crate::outbox::{Kind, Outbox, Pushed};
use crate::protocol::close::ServerClose;
use crate::protocol::{encode, Id, Proto, RoomEvent, ServerMsg};
use crate::room::{Roster, Span};
use crate::ws::Text;

/// Where a socket stands with its room's roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PeerState {
    /// Its join is being written: the version that will include it is not known yet,
    /// and nothing may reach it before its first roster.
    Joining,
    /// Waiting for a full roster once the mirror has applied `version` of the store,
    /// since `since`.
    Awaiting { version: u64, since: Instant },
    /// Holds the roster at this client version and takes diffs from there.
    Holds(u64),
}

pub(super) struct Peer {
    id: Id,
    proto: Proto,
    outbox: Arc<Outbox>,
    state: PeerState,
}

impl PeerState {
    /// Waiting for the roster at `version` of the store (0: whatever the mirror holds).
    pub(super) fn awaiting(version: u64) -> PeerState {
        PeerState::Awaiting {
            version,
            since: Instant::now(),
        }
    }
}

impl Peer {
    pub(super) fn new(id: Id, proto: Proto, outbox: Arc<Outbox>, state: PeerState) -> Peer {
        Peer {
            id,
            proto,
            outbox,
            state,
        }
    }
}

/// Serialised rosters of one version, shared by every socket that needs one.
#[derive(Default)]
struct Frames {
    version: u64,
    v1: Option<Text>,
    /// Protocol-2 snapshot without its closing brace: each socket's `self` ending goes
    /// out after it, as the message's last fragment.
    v2_prefix: Option<Bytes>,
}

impl Frames {
    fn at(&mut self, roster: &Roster) -> &mut Frames {
        if self.version != roster.version() {
            *self = Frames {
                version: roster.version(),
                ..Frames::default()
            };
        }
        self
    }

    fn v1(&mut self, roster: &Roster) -> Text {
        self.at(roster)
            .v1
            .get_or_insert_with(|| encode(&ServerMsg::Presence(roster.presence(false))).into())
            .clone()
    }

    fn v2(&mut self, roster: &Roster, self_id: &Id) -> Text {
        let prefix = self.at(roster).v2_prefix.get_or_insert_with(|| {
            let mut json = encode(&ServerMsg::Presence(roster.presence(true)));
            json.pop(); // the closing brace: `self` goes last
            json.into()
        });
        let self_json = serde_json::to_string(&**self_id).expect("strings serialize");
        Text::with_tail(prefix.clone(), format!(",\"self\":{self_json}}}"))
    }

    fn full(&mut self, roster: &Roster, peer: &Peer) -> Text {
        match peer.proto {
            Proto::V1 => self.v1(roster),
            Proto::V2 => self.v2(roster, &peer.id),
        }
    }
}

/// Whether a room's pending changes go out as they come or wait for the interval's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Pace {
    #[default]
    Immediate,
    /// The instance ran out of budget: one merged flush is scheduled for this room.
    Merging,
}

/// Frames and bytes queued by one fan-out step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sent {
    pub frames: u64,
    pub bytes: u64,
}

impl Sent {
    fn add(&mut self, frame: &Text) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
    }
}

/// A room's sockets on this instance.
#[derive(Default)]
pub(super) struct Peers {
    by_socket: HashMap<SocketId, Peer>,
    frames: Frames,
    pub(super) pace: Pace,
}

impl Peers {
    pub(super) fn insert(&mut self, socket: SocketId, peer: Peer) {
        self.by_socket.insert(socket, peer);
    }

    pub(super) fn remove(&mut self, socket: SocketId) -> Option<Peer> {
        self.by_socket.remove(&socket)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_socket.is_empty()
    }

    pub(super) fn set_state(&mut self, socket: SocketId, state: PeerState) {
        if let Some(peer) = self.by_socket.get_mut(&socket) {
            peer.state = state;
        }
    }

    /// The store's numbering went down (it lost the room): versions awaited from before
    /// mean nothing any more, and the roster just read includes every write of ours.
    pub(super) fn renumbered(&mut self) {
        self.release_waiting(|_| true);
    }

    /// A heartbeat sent at `sent` found the mirror in step with the store, so every
    /// write that had returned by then is in the mirror: a socket still waiting since
    /// before awaits a version of an older numbering (its write crossed a store that
    /// lost its data) and gets the roster as it is.
    pub(super) fn release_stuck(&mut self, sent: Instant) {
        self.release_waiting(|since| since < sent);
    }

    fn release_waiting(&mut self, stuck: impl Fn(Instant) -> bool) {
        for peer in self.by_socket.values_mut() {
            if let PeerState::Awaiting { since, .. } = peer.state {
                if stuck(since) {
                    peer.state = PeerState::Awaiting { version: 0, since };
                }
            }
        }
    }

    /// A full roster to every socket waiting for one that `roster` covers. While the room
    /// is merging they wait for its flush: served now, they would hold a version inside
    /// the merged diff's span and need a second full roster when it goes out (in a big
    /// room, a megabyte each, for every join of the interval).
    pub(super) fn serve_waiting(&mut self, roster: &Roster) -> Sent {
        let mut sent = Sent::default();
        if self.pace == Pace::Merging {
            return sent;
        }
        let Peers {
            by_socket, frames, ..
        } = self;
        for peer in by_socket.values_mut() {
            match peer.state {
                PeerState::Awaiting { version, .. } if version <= roster.store_version() => {
                    let frame = frames.full(roster, peer);
                    peer.state = PeerState::Holds(roster.version());
                    sent.add(&frame);
                    if peer.outbox.push(frame.clone(), Kind::Full) == Pushed::Overflow {
                        peer.outbox.replace_rosters(frame);
                    }
                }
                _ => {}
            }
        }
        sent
    }

    /// Send the net diff of `span` (serialised once), or a full roster to sockets that
    /// hold another version; protocol-1 sockets only when the member set changed.
    pub(super) fn flush(&mut self, roster: &Roster, span: &mut Span) -> Sent {
        let mut sent = Sent::default();
        let Some(diff) = span.take(roster) else {
            return sent;
        };
        let members_changed = !diff.joined.is_empty() || !diff.left.is_empty();
        let (prev, version) = (diff.prev, diff.version);
        let mut diff_frame: Option<Text> = None;
        let diff_msg = ServerMsg::Diff(diff);
        let Peers {
            by_socket, frames, ..
        } = self;
        for peer in by_socket.values_mut() {
            let known = match peer.state {
                PeerState::Holds(known) if known < version => known,
                _ => continue,
            };
            peer.state = PeerState::Holds(version);
            let (frame, kind) = match peer.proto {
                Proto::V1 if !members_changed => continue,
                Proto::V1 => (frames.v1(roster), Kind::Full),
                Proto::V2 if known == prev => (
                    diff_frame
                        .get_or_insert_with(|| encode(&diff_msg).into())
                        .clone(),
                    Kind::Diff,
                ),
                Proto::V2 => (frames.v2(roster, &peer.id), Kind::Full),
            };
            sent.add(&frame);
            if peer.outbox.push(frame, kind) == Pushed::Overflow {
                peer.outbox.replace_rosters(frames.full(roster, peer));
            }
        }
        sent
    }

    /// Queue an event for the room's protocol-2 sockets, but not `except`'s.
    pub(super) fn deliver_event(&self, msg: &RoomEvent, except: Option<SocketId>) -> Sent {
        let mut sent = Sent::default();
        let mut frame: Option<Text> = None;
        for (socket, peer) in &self.by_socket {
            if Some(*socket) == except || peer.proto != Proto::V2 {
                continue;
            }
            let f = frame
                .get_or_insert_with(|| encode(&ServerMsg::Event(msg.clone())).into())
                .clone();
            sent.add(&f);
            peer.outbox.push(f, Kind::Other);
        }
        sent
    }

    pub(super) fn close_all(&self, why: ServerClose) {
        for peer in self.by_socket.values() {
            peer.outbox.close(why);
        }
    }
}

/// The instance's fan-out budget: frames it writes per interval, over every room.
///
/// Rolling fixed windows: the first change after a quiet spell opens a window, and the
/// budget counts every roster and event frame queued in it.
#[derive(Debug)]
pub struct Budget {
    frames: u64,
    interval: Duration,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    used: u64,
}

impl Budget {
    pub fn new(frames: u32, interval: Duration, now: Instant) -> Budget {
        Budget {
            frames: u64::from(frames.max(1)),
            interval,
            window: Mutex::new(Window {
                start: now,
                used: 0,
            }),
        }
    }

    fn window(&self, now: Instant) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now >= w.start + self.interval {
            w.start = now;
            w.used = 0;
        }
        w
    }

    /// Is there budget left in the current interval?
    pub fn available(&self, now: Instant) -> bool {
        self.window(now).used < self.frames
    }

    /// `frames` were queued at `now`.
    pub fn spend(&self, now: Instant, frames: u64) {
        if frames > 0 {
            self.window(now).used += frames;
        }
    }

    /// When the current interval ends: rooms that merge flush then.
    pub fn window_end(&self, now: Instant) -> Instant {
        self.window(now).start + self.interval
    }
}

impl Hub {
    /// The mirror moved: serve sockets waiting for a roster, then send the change now,
    /// or at the interval's end if the instance has no budget left.
    pub(super) fn changed(self: &Arc<Self>, cell: &Arc<RoomCell>, room: &mut Room) {
        let now = Instant::now();
        let Room { mirror, peers, .. } = room;
        let Some(view) = mirror.view_mut() else {
            return;
        };
        let sent = peers.serve_waiting(&view.roster);
        self.account(now, sent);
        if view.span.is_empty() || peers.pace == Pace::Merging {
            return;
        }
        if self.budget.available(now) {
            let sent = peers.flush(&view.roster, &mut view.span);
            if sent.frames > 0 {
                self.metrics
                    .broadcasts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.account(now, sent);
        } else {
            peers.pace = Pace::Merging;
            self.timers
                .add(self.budget.window_end(now), Timer::Flush(cell.clone()));
        }
    }

    /// Full rosters for the sockets waiting for one, and nothing else.
    pub(super) fn serve_waiting(&self, room: &mut Room) {
        let Room { mirror, peers, .. } = room;
        if let Some(roster) = mirror.roster() {
            let sent = peers.serve_waiting(roster);
            self.account(Instant::now(), sent);
        }
    }

    /// The interval a merging room waited for is over: its changes go out as one.
    pub(super) fn flush_merged(self: &Arc<Self>, cell: &Arc<RoomCell>) {
        let mut room = cell.lock();
        let room = &mut *room;
        room.peers.pace = Pace::Immediate;
        self.serve_waiting(room);
        let Room { mirror, peers, .. } = room;
        if let Some(view) = mirror.view_mut() {
            let sent = peers.flush(&view.roster, &mut view.span);
            if sent.frames > 0 {
                self.metrics
                    .broadcasts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.metrics
                    .merged
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.account(Instant::now(), sent);
        }
    }

    /// Queue an event for the room's protocol-2 sockets, but not `except`'s.
    pub(super) fn deliver_event(&self, room: &Room, msg: &RoomEvent, except: Option<SocketId>) {
        let sent = room.peers.deliver_event(msg, except);
        self.account(Instant::now(), sent);
    }

    fn account(&self, now: Instant, sent: Sent) {
        self.budget.spend(now, sent.frames);
        self.metrics.sent(sent.frames, sent.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_frames_per_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let b = Budget::new(100, ms(100), t0);
        assert!(b.available(t0));
        b.spend(t0, 60);
        assert!(b.available(t0 + ms(10)));
        b.spend(t0 + ms(10), 60);
        // 120 of 100 written: nothing more goes out at once in this interval...
        assert!(!b.available(t0 + ms(50)));
        assert_eq!(b.window_end(t0 + ms(50)), t0 + ms(100));
        // ...and the next one starts afresh.
        assert!(b.available(t0 + ms(100)));
        assert_eq!(b.window_end(t0 + ms(130)), t0 + ms(200));
    }
}

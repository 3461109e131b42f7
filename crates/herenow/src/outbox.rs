//! A socket's outbound queue, bounded in bytes.
//!
//! The hub queues frames serialised once for the whole room; the socket's writer drains
//! them. A full roster supersedes every roster frame queued before it that the writer has
//! not taken yet: a socket that is a little behind (a storm of joins while its writer
//! waits for the CPU) gets the latest roster once instead of every one in between, at no
//! cost in latency. A socket that falls further behind never grows the server's memory
//! without bound: the budget bounds the backlog after the latest full roster (diffs and
//! events); the full roster itself is always let through, however large (a snapshot of a
//! 10,000-member room is over a megabyte, and counting it would make every diff behind
//! it an overflow). On overflow its queued rosters are replaced by the latest full one,
//! ephemeral frames are dropped (events are at most once anyway), and a socket that keeps
//! overflowing is closed with 1013 (try again later) so it reconnects and starts fresh.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::ws::Text;
use tokio::sync::Notify;

use crate::protocol::close::ServerClose;

/// Overflows in a row (without the queue ever draining) before the socket is closed.
pub const MAX_OVERFLOWS: u32 = 3;

/// What a frame is, for deciding what may be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole roster (a snapshot, or a protocol-1 presence): it supersedes every roster
    /// frame queued before it.
    Full,
    /// A diff: it builds on the roster frames before it.
    Diff,
    /// An event, error or pong: dropped when there is no room.
    Other,
}

impl Kind {
    fn is_roster(self) -> bool {
        matches!(self, Kind::Full | Kind::Diff)
    }
}

/// The result of [`Outbox::push`].
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue is closed, or the (ephemeral) frame did not fit and was dropped.
    Dropped,
    /// A roster frame did not fit: every queued roster frame was dropped, and the caller
    /// must queue a full roster with [`Outbox::replace_rosters`].
    Overflow,
}

/// What the writer sends next.
#[derive(Debug)]
pub enum Next {
    Frames(Vec<Text>),
    Close(ServerClose),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(Text, Kind)>,
    /// Bytes of everything queued.
    bytes: usize,
    /// Bytes of the full rosters among them (at most one: each supersedes the others).
    full: usize,
    overflows: u32,
    close: Option<ServerClose>,
    /// The close was handed to the writer: nothing more will be sent.
    finished: bool,
}

impl Inner {
    /// Drop every queued roster frame (a newer full roster replaces them all).
    fn drop_rosters(&mut self) {
        self.queue.retain(|(_, k)| !k.is_roster());
        self.bytes = self.queue.iter().map(|(f, _)| f.len()).sum();
        self.full = 0;
    }
}

pub struct Outbox {
    budget: usize,
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Outbox {
    pub fn new(budget: usize) -> Outbox {
        Outbox {
            budget,
            inner: Mutex::default(),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, frame: Text, kind: Kind) -> Pushed {
        let mut q = self.lock();
        if q.close.is_some() || q.finished {
            return Pushed::Dropped;
        }
        if kind == Kind::Full && q.queue.iter().any(|(_, k)| k.is_roster()) {
            q.drop_rosters();
        }
        // The backlog after the latest full roster is what the budget bounds.
        let backlog = q.bytes - q.full + if kind == Kind::Full { 0 } else { frame.len() };
        if backlog > self.budget {
            if kind == Kind::Other {
                return Pushed::Dropped;
            }
            q.drop_rosters();
            q.overflows += 1;
            if q.overflows > MAX_OVERFLOWS {
                q.queue.clear();
                q.bytes = 0;
                q.full = 0;
                q.close = Some(ServerClose::Slow);
                drop(q);
                self.notify.notify_one();
                return Pushed::Dropped;
            }
            return Pushed::Overflow;
        }
        q.bytes += frame.len();
        if kind == Kind::Full {
            q.full += frame.len();
        }
        q.queue.push_back((frame, kind));
        drop(q);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// Queue `roster` as the one full roster, whatever its size, after an overflow.
    pub fn replace_rosters(&self, roster: Text) {
        let mut q = self.lock();
        if q.close.is_some() || q.finished {
            return;
        }
        q.drop_rosters();
        q.bytes += roster.len();
        q.full = roster.len();
        q.queue.push_back((roster, Kind::Full));
        drop(q);
        self.notify.notify_one();
    }

    /// Send what is queued, then close as `why` says. Later pushes are dropped; the
    /// first close decided wins.
    pub fn close(&self, why: ServerClose) {
        let mut q = self.lock();
        if q.close.is_none() && !q.finished {
            q.close = Some(why);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Bytes waiting (for metrics and tests).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn take(&self) -> Option<Next> {
        let mut q = self.lock();
        if !q.queue.is_empty() {
            q.bytes = 0;
            q.full = 0;
            q.overflows = 0;
            return Some(Next::Frames(q.queue.drain(..).map(|(f, _)| f).collect()));
        }
        if let Some(why) = q.close.take() {
            q.finished = true;
            return Some(Next::Close(why));
        }
        None
    }

    /// Everything queued so far, or the close once the queue is empty. Cancel-safe.
    pub async fn next(&self) -> Next {
        loop {
            if let Some(next) = self.take() {
                return next;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Text {
        "x".repeat(n).into()
    }

    #[tokio::test]
    async fn rosters_are_superseded_and_events_dropped_when_full() {
        let o = Outbox::new(100);
        assert_eq!(o.push(frame(60), Kind::Diff), Pushed::Queued);
        assert_eq!(o.push(frame(30), Kind::Other), Pushed::Queued);
        assert_eq!(o.push(frame(30), Kind::Other), Pushed::Dropped);
        assert_eq!(o.push(frame(60), Kind::Diff), Pushed::Overflow);
        assert_eq!(
            o.queued_bytes(),
            30,
            "the old roster went, the event stayed"
        );
        o.replace_rosters(frame(500));
        assert_eq!(
            o.queued_bytes(),
            530,
            "the latest full roster always gets through"
        );
        match o.next().await {
            Next::Frames(f) => assert_eq!(f.iter().map(|f| f.len()).collect::<Vec<_>>(), [30, 500]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_full_roster_over_the_budget_makes_no_overflow_of_the_diffs_behind_it() {
        // A big room's snapshot is larger than the budget; the diffs that follow it while
        // the writer is busy must not count as the socket falling behind.
        let o = Outbox::new(100);
        assert_eq!(o.push(frame(500), Kind::Full), Pushed::Queued);
        for _ in 0..=MAX_OVERFLOWS {
            assert_eq!(o.push(frame(20), Kind::Diff), Pushed::Queued);
        }
        assert_eq!(
            o.push(frame(30), Kind::Other),
            Pushed::Dropped,
            "backlog 80 + 30 > 100"
        );
        match o.next().await {
            Next::Frames(f) => assert_eq!(f.len(), 1 + MAX_OVERFLOWS as usize + 1),
            other => panic!("{other:?}"),
        }
        // The backlog itself is still bounded.
        assert_eq!(o.push(frame(500), Kind::Full), Pushed::Queued);
        assert_eq!(o.push(frame(101), Kind::Diff), Pushed::Overflow);
        assert_eq!(
            o.queued_bytes(),
            0,
            "the roster and the diff went; the caller queues a new one"
        );
    }

    #[tokio::test]
    async fn a_socket_that_keeps_overflowing_is_closed_with_1013() {
        let o = Outbox::new(10);
        for _ in 0..MAX_OVERFLOWS {
            assert_eq!(o.push(frame(20), Kind::Diff), Pushed::Overflow);
            o.replace_rosters(frame(20));
        }
        assert_eq!(o.push(frame(20), Kind::Diff), Pushed::Dropped);
        match o.next().await {
            Next::Close(why) => assert_eq!(why, ServerClose::Slow),
            other => panic!("{other:?}"),
        }
        assert_eq!(o.push(frame(1), Kind::Other), Pushed::Dropped);
    }

    #[tokio::test]
    async fn a_full_roster_supersedes_the_rosters_not_yet_written() {
        let o = Outbox::new(1000);
        o.push(frame(10), Kind::Full);
        o.push(frame(11), Kind::Diff);
        o.push(frame(12), Kind::Other);
        o.push(frame(13), Kind::Diff);
        o.push(frame(14), Kind::Full);
        match o.next().await {
            Next::Frames(f) => assert_eq!(f.iter().map(|f| f.len()).collect::<Vec<_>>(), [12, 14]),
            other => panic!("{other:?}"),
        }
        // Taken by the writer: the next full roster has nothing to supersede.
        o.push(frame(15), Kind::Diff);
        match o.next().await {
            Next::Frames(f) => assert_eq!(f.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(o.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn close_comes_after_queued_frames() {
        let o = Outbox::new(100);
        o.push(frame(5), Kind::Other);
        o.close(ServerClose::RateLimited);
        o.close(ServerClose::Restart);
        assert!(matches!(o.next().await, Next::Frames(_)));
        assert!(matches!(
            o.next().await,
            Next::Close(ServerClose::RateLimited)
        ));
    }
}

//! Every deadline of the hub on one task: grace windows ending, merged flushes at the
//! end of a fan-out interval, recoveries running out. A queue ordered by deadline and
//! one sleeper (as mini-redis purges its expirations), instead of a sleeping task per
//! closed socket: a room of 10,000 closing at once costs 10,000 queue entries, not
//! 10,000 tasks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Hub, RoomCell};
use crate::protocol::Id;

/// What is due at a deadline.
pub(super) enum Timer {
    /// A grace window of one of `id`'s tabs ended.
    Grace(Arc<RoomCell>, Id),
    /// The fan-out interval a merging room waits for is over.
    Flush(Arc<RoomCell>),
    /// A recovery of the room's mirror runs out (see `mirror.rs`).
    Recovery(Arc<RoomCell>),
}

#[derive(Default)]
pub(super) struct Timers {
    queue: Mutex<BTreeMap<(Instant, u64), Timer>>,
    seq: AtomicU64,
    wake: Notify,
}

impl Timers {
    pub(super) fn add(&self, at: Instant, timer: Timer) {
        let seq = self.seq.fetch_add(1, Relaxed);
        let earliest = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.insert((at, seq), timer);
            q.first_key_value().is_some_and(|(k, _)| k.1 == seq)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.first_key_value().map(|(k, _)| k.0)
    }

    /// Every timer due at `now`, earliest first.
    fn due(&self, now: Instant) -> Vec<Timer> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let later = q.split_off(&(now, u64::MAX));
        std::mem::replace(&mut *q, later).into_values().collect()
    }
}

impl Hub {
    /// The timer task: runs for as long as the hub.
    pub(super) async fn run_timers(self: Arc<Self>) {
        loop {
            match self.timers.next_deadline() {
                Some(at) => {
                    tokio::select! {
                        () = self.timers.wake.notified() => continue,
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => {
                    self.timers.wake.notified().await;
                    continue;
                }
            }
            for timer in self.timers.due(Instant::now()) {
                match timer {
                    Timer::Grace(cell, id) => {
                        let hub = self.clone();
                        tokio::spawn(async move { hub.expire_grace(&cell, &id).await });
                    }
                    Timer::Flush(cell) => self.flush_merged(&cell),
                    Timer::Recovery(cell) => self.end_recovery(&cell),
                }
            }
        }
    }
}

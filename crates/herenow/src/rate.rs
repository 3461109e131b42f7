//! Pacing, as pure state machines over instants the caller passes in (so tests need no
//! clock): a [`TokenBucket`] limits what one socket may send, a [`Throttle`] decides when
//! a room's changes go out.

use std::time::Duration;

use tokio::time::Instant;

/// `capacity` tokens, refilled at `per_sec`; each message takes one.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            per_sec: f64::from(per_sec),
            tokens: capacity,
            last: now,
        }
    }

    /// Take a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rooms with up to this many sockets on one instance get the whole broadcast burst.
pub const FULL_BURST_SOCKETS: usize = 1_000;

/// When a room's pending changes are broadcast.
///
/// At human pace every change goes out at once. When more than `burst` broadcasts fall
/// in one `interval`, the room switches to merging: one broadcast per interval, carrying
/// everything since the last, until an interval passes without a change.
#[derive(Debug)]
pub struct Throttle {
    burst: u32,
    interval: Duration,
    window_start: Instant,
    sent: u32,
    /// While merging: when the last merged broadcast went out.
    merging_since: Option<Instant>,
}

impl Throttle {
    pub fn new(burst: u32, interval: Duration, now: Instant) -> Throttle {
        Throttle {
            burst,
            interval,
            window_start: now,
            sent: 0,
            merging_since: None,
        }
    }

    /// A change is pending in a room of `sockets` local sockets: `None` = broadcast now,
    /// `Some(at)` = broadcast at `at`.
    ///
    /// A room of up to [`FULL_BURST_SOCKETS`] gets the whole burst; a bigger one fewer
    /// immediate broadcasts per interval, in proportion (at least one), so that a busy
    /// room never makes this instance write more than `burst × FULL_BURST_SOCKETS`
    /// frames per interval. Ten joins a second in a room of 10,000 would otherwise be
    /// 100,000 frames a second, one broadcast each; merged, they are one diff.
    pub fn on_change(&mut self, now: Instant, sockets: usize) -> Option<Instant> {
        let budget = self.burst as usize * FULL_BURST_SOCKETS;
        let burst = (budget / sockets.max(1)).clamp(1, self.burst as usize) as u32;
        if let Some(last) = self.merging_since {
            if now < last + self.interval {
                return Some(last + self.interval);
            }
            // A quiet interval passed: back to immediate broadcasts.
            self.merging_since = None;
            self.window_start = now;
            self.sent = 0;
        }
        if now >= self.window_start + self.interval {
            self.window_start = now;
            self.sent = 0;
        }
        if self.sent < burst {
            self.sent += 1;
            None
        } else {
            self.merging_since = Some(now);
            Some(now + self.interval)
        }
    }

    /// The broadcast scheduled by [`Throttle::on_change`] went out at `now`.
    pub fn on_timer(&mut self, now: Instant) {
        self.merging_since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20, 40, t0);
        assert_eq!((0..50).filter(|_| b.try_take(t0)).count(), 40);
        // 100 ms later: two more tokens.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..10).filter(|_| b.try_take(t1)).count(), 2);
        // Refill never exceeds the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| b.try_take(t2)).count(), 40);
    }

    #[test]
    fn throttle_is_immediate_at_human_pace() {
        let t0 = Instant::now();
        let mut th = Throttle::new(10, Duration::from_millis(100), t0);
        for i in 0..100 {
            // One change every 50 ms: never delayed.
            assert_eq!(th.on_change(t0 + Duration::from_millis(50 * i), 10), None);
        }
    }

    #[test]
    fn a_big_room_gets_a_smaller_burst() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut th = Throttle::new(10, ms(100), t0);
        // 5,000 sockets: two immediate broadcasts per interval, then merging.
        assert_eq!(th.on_change(t0, 5_000), None);
        assert_eq!(th.on_change(t0 + ms(1), 5_000), None);
        assert_eq!(th.on_change(t0 + ms(2), 5_000), Some(t0 + ms(102)));
        // 100,000 sockets: still one at once after a quiet spell, never none.
        let mut th = Throttle::new(10, ms(100), t0);
        assert_eq!(th.on_change(t0, 100_000), None);
        assert_eq!(th.on_change(t0 + ms(1), 100_000), Some(t0 + ms(101)));
        th.on_timer(t0 + ms(101));
        assert_eq!(th.on_change(t0 + ms(500), 100_000), None);
    }

    #[test]
    fn throttle_merges_a_storm_into_one_per_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut th = Throttle::new(10, ms(100), t0);
        for _ in 0..10 {
            assert_eq!(th.on_change(t0, 10), None);
        }
        // The 11th within the interval waits for the next one, and so does every change
        // until the storm calms down.
        assert_eq!(th.on_change(t0 + ms(1), 10), Some(t0 + ms(101)));
        assert_eq!(th.on_change(t0 + ms(50), 10), Some(t0 + ms(101)));
        th.on_timer(t0 + ms(101));
        assert_eq!(th.on_change(t0 + ms(120), 10), Some(t0 + ms(201)));
        th.on_timer(t0 + ms(201));
        // A quiet interval later, changes go out at once again.
        assert_eq!(th.on_change(t0 + ms(400), 10), None);
    }
}

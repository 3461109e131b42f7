//! Inbound pacing, as a pure state machine over instants the caller passes in (so tests
//! need no clock): a [`TokenBucket`] limits what one socket may send. (Outbound pacing,
//! the instance's fan-out budget, is the hub's: `hub/fanout.rs`.)

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}

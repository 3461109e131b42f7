//! Prometheus metrics, hand-rolled: a handful of atomics is all presence needs, and
//! counting must cost nothing on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::protocol::close::ServerClose;
use crate::protocol::ErrorCode;

/// Upper bounds of the store latency histogram, in seconds.
const STORE_BUCKETS: [f64; 10] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

#[derive(Default)]
pub struct Metrics {
    pub sockets: AtomicI64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub broadcasts: AtomicU64,
    /// Broadcasts that went out merged, at the end of a fan-out interval.
    pub merged: AtomicU64,
    pub store_errors: AtomicU64,
    pub resyncs: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    closes: [AtomicU64; CLOSE_LABELS.len()],
    store_calls: AtomicU64,
    store_micros: AtomicU64,
    store_buckets: [AtomicU64; STORE_BUCKETS.len()],
}

/// The `reason` labels of server closes, in the order they are listed
/// ([`ServerClose::label`] maps each close to one).
const CLOSE_LABELS: [&str; 5] = ["policy", "too_big", "slow", "stale", "restart"];

impl Metrics {
    pub fn error(&self, code: ErrorCode) {
        let i = ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0);
        self.errors[i].fetch_add(1, Relaxed);
    }

    /// The server closed a socket (counted when the close is handed to the socket's
    /// writer, whoever decided it: the session, the outbox or a shutdown).
    pub fn closed(&self, why: ServerClose) {
        let i = CLOSE_LABELS
            .iter()
            .position(|l| *l == why.label())
            .expect("every close label is listed");
        self.closes[i].fetch_add(1, Relaxed);
    }

    /// Server closes counted under `label` so far (tests, dashboards).
    pub fn closes(&self, label: &str) -> u64 {
        CLOSE_LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.closes[i].load(Relaxed))
    }

    pub fn store_call(&self, took: Duration) {
        self.store_calls.fetch_add(1, Relaxed);
        self.store_micros
            .fetch_add(took.as_micros().try_into().unwrap_or(u64::MAX), Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = STORE_BUCKETS.iter().position(|b| secs <= *b) {
            self.store_buckets[i].fetch_add(1, Relaxed);
        }
    }

    pub fn sent(&self, frames: u64, bytes: u64) {
        self.messages_out.fetch_add(frames, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    /// The text exposition format; `rooms` and `members` are read from the hub.
    pub fn render(&self, rooms: usize, members: usize, store_connected: bool) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "herenow_sockets",
            "Open WebSockets on this instance.",
            self.sockets.load(Relaxed),
        );
        gauge(
            "herenow_rooms",
            "Rooms with sockets on this instance.",
            rooms as i64,
        );
        gauge(
            "herenow_members",
            "Members of those rooms, on every instance.",
            members as i64,
        );
        gauge(
            "herenow_store_connected",
            "1 while the store answers.",
            i64::from(store_connected),
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "herenow_messages_in_total",
            "Frames received from clients.",
            self.messages_in.load(Relaxed),
        );
        counter(
            "herenow_messages_out_total",
            "Frames queued to clients.",
            self.messages_out.load(Relaxed),
        );
        counter(
            "herenow_bytes_out_total",
            "Bytes queued to clients.",
            self.bytes_out.load(Relaxed),
        );
        counter(
            "herenow_broadcasts_total",
            "Room broadcasts (each serialised once).",
            self.broadcasts.load(Relaxed),
        );
        counter(
            "herenow_broadcasts_merged_total",
            "Room broadcasts merged at the end of a fan-out interval (the instance had written its BROADCAST_FRAMES).",
            self.merged.load(Relaxed),
        );
        counter(
            "herenow_store_errors_total",
            "Store calls that failed.",
            self.store_errors.load(Relaxed),
        );
        counter(
            "herenow_resyncs_total",
            "Rooms re-read from the store.",
            self.resyncs.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP herenow_errors_total Error messages sent, by code.\n# TYPE herenow_errors_total counter");
        for (code, n) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "herenow_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                n.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP herenow_server_closes_total Sockets closed by the server, by reason.\n# TYPE herenow_server_closes_total counter");
        for (why, n) in CLOSE_LABELS.iter().zip(&self.closes) {
            let _ = writeln!(
                out,
                "herenow_server_closes_total{{reason=\"{why}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP herenow_store_seconds Latency of store calls.\n# TYPE herenow_store_seconds histogram");
        let mut cumulative = 0;
        for (bound, n) in STORE_BUCKETS.iter().zip(&self.store_buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                out,
                "herenow_store_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let calls = self.store_calls.load(Relaxed);
        let _ = writeln!(out, "herenow_store_seconds_bucket{{le=\"+Inf\"}} {calls}");
        let _ = writeln!(
            out,
            "herenow_store_seconds_sum {}",
            self.store_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "herenow_store_seconds_count {calls}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_has_a_listed_label() {
        for close in ServerClose::ALL {
            assert!(CLOSE_LABELS.contains(&close.label()), "{close:?}");
        }
    }

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.error(ErrorCode::RateLimited);
        m.store_call(Duration::from_micros(300));
        m.store_call(Duration::from_secs(2));
        m.closed(ServerClose::Slow);
        m.closed(ServerClose::RoomFull);
        let text = m.render(2, 5, true);
        assert!(text.contains("herenow_server_closes_total{reason=\"slow\"} 1"));
        assert!(text.contains("herenow_server_closes_total{reason=\"policy\"} 1"));
        assert!(text.contains("herenow_server_closes_total{reason=\"restart\"} 0"));
        assert!(text.contains("herenow_rooms 2"));
        assert!(text.contains("herenow_errors_total{code=\"rate_limited\"} 1"));
        assert!(text.contains("herenow_store_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("herenow_store_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("herenow_store_seconds_count 2"));
    }
}

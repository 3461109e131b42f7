//! Latency distributions: nearest-rank percentiles over a set of samples.
//!
//! Nearest rank (the smallest sample with at least q% of the samples at or below it) is
//! used rather than interpolation so that every figure in the report is a latency that
//! was actually observed.

use serde::Serialize;
use std::time::Duration;

/// The percentiles the report quotes, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dist {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Dist {
    /// Summarises samples given in milliseconds; `None` when there are none.
    pub fn from_ms(samples: &[f64]) -> Option<Dist> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let sum: f64 = sorted.iter().sum();
        // Microsecond resolution is all the clock stamps carry.
        let r = |v: f64| round(v, 3);
        Some(Dist {
            n: sorted.len(),
            min: r(sorted[0]),
            p50: r(percentile(&sorted, 50.0)),
            p90: r(percentile(&sorted, 90.0)),
            p95: r(percentile(&sorted, 95.0)),
            p99: r(percentile(&sorted, 99.0)),
            max: r(sorted[sorted.len() - 1]),
            mean: r(sum / sorted.len() as f64),
        })
    }
}

/// Nearest-rank percentile of an ascending slice; `q` in 0..=100.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let q = q.clamp(0.0, 100.0);
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds, with microsecond resolution kept.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounds for the JSON line: enough digits to compare runs, not float noise.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Points of the empirical cumulative distribution, thinned to at most `max_points`
/// (always keeping the first and the last): what the join-latency plot draws.
pub fn cdf_points(samples: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(max_points.max(2));
    let mut out: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0)
        .map(|(i, v)| (*v, (i + 1) as f64 / n as f64))
        .collect();
    if out.last().map(|p| p.1) != Some(1.0) {
        out.push((sorted[n - 1], 1.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        // 10 samples: p95 is the 10th (ceil(9.5)), p50 the 5th.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), 10.0);
        assert_eq!(percentile(&v, 50.0), 5.0);
    }

    #[test]
    fn dist_sorts_and_summarises() {
        let d = Dist::from_ms(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(d.n, 5);
        assert_eq!(d.min, 1.0);
        assert_eq!(d.max, 5.0);
        assert_eq!(d.p50, 3.0);
        assert_eq!(d.mean, 3.0);
        assert!(Dist::from_ms(&[]).is_none());
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }

    #[test]
    fn cdf_is_monotonic_and_ends_at_one() {
        let samples: Vec<f64> = (0..1000).map(|i| f64::from(i % 37)).collect();
        let pts = cdf_points(&samples, 50);
        assert!(pts.len() <= 52);
        assert_eq!(pts.last().unwrap().1, 1.0);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        assert!(cdf_points(&[], 10).is_empty());
    }

    #[test]
    fn rounding() {
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(2.0 / 3.0, 3), 0.667);
    }
}

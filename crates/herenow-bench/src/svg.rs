//! Plots drawn as plain SVG text: a line chart with optional log x axis, reference lines
//! and a legend. No dependency, deterministic output (same data, same bytes), readable
//! on GitHub.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
    /// Draw a dot on every point (for sparse measurements).
    pub dots: bool,
}

/// A labelled horizontal or vertical reference line (a target).
#[derive(Debug, Clone)]
pub struct Rule {
    pub at: f64,
    pub label: String,
}

#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub h_rules: Vec<Rule>,
    pub v_rules: Vec<Rule>,
    pub x_log: bool,
}

/// A palette readable on light and dark backgrounds.
pub const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 62.0;

/// Escapes text for SVG content and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" step (1, 2 or 5 times a power of ten) near `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// Linear ticks covering `[lo, hi]`, about `n` of them; returns (axis lo, axis hi, ticks).
pub fn linear_ticks(lo: f64, hi: f64, n: usize) -> (f64, f64, Vec<f64>) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let step = nice_step((hi - lo) / n.max(1) as f64);
    let start = (lo / step).floor() * step;
    let end = (hi / step).ceil() * step;
    let count = ((end - start) / step).round() as usize;
    let ticks = (0..=count).map(|i| start + i as f64 * step).collect();
    (start, end, ticks)
}

/// Log ticks (1, 2, 5 per decade) covering `[lo, hi]` (both > 0).
pub fn log_ticks(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let lo = lo.max(1e-9);
    let hi = hi.max(lo * 10.0);
    let d0 = lo.log10().floor() as i32;
    let d1 = hi.log10().ceil() as i32;
    let mut ticks = Vec::new();
    for d in d0..=d1 {
        for m in [1.0, 2.0, 5.0] {
            let t = m * 10f64.powi(d);
            if t >= 10f64.powi(d0) && t <= 10f64.powi(d1) {
                ticks.push(t);
            }
        }
    }
    (10f64.powi(d0), 10f64.powi(d1), ticks)
}

/// A tick label without float noise.
pub fn label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if a >= 1e6 {
        return format!("{}M", label(v / 1e6));
    }
    if a >= 1e4 {
        return format!("{}k", label(v / 1e3));
    }
    let s = if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    };
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Chart {
    pub fn render(&self) -> String {
        let pts = self.series.iter().flat_map(|s| s.points.iter().copied());
        let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        for r in &self.h_rules {
            y1 = y1.max(r.at);
        }
        for r in &self.v_rules {
            x0 = x0.min(r.at);
            x1 = x1.max(r.at);
        }
        if !x0.is_finite() {
            (x0, x1, y1) = (0.0, 1.0, 1.0);
        }
        let (xa, xb, xt) = if self.x_log {
            log_ticks(x0.max(1e-6), x1.max(1e-6))
        } else {
            linear_ticks(x0.min(0.0), x1, 6)
        };
        let (ya, yb, yt) = linear_ticks(0.0, y1 * 1.05, 5);
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| -> f64 {
            let f = if self.x_log {
                (x.max(xa).log10() - xa.log10()) / (xb.log10() - xa.log10())
            } else {
                (x - xa) / (xb - xa)
            };
            LEFT + f.clamp(0.0, 1.0) * pw
        };
        let sy = |y: f64| -> f64 { TOP + ph - ((y - ya) / (yb - ya)).clamp(0.0, 1.0) * ph };

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        for t in &xt {
            let x = sx(*t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                label(*t)
            );
        }
        for t in &yt {
            let y = sy(*t);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                label(*t)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 16.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for r in &self.h_rules {
            let y = sy(r.at);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ff7f0e" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#ff7f0e">{}</text>"##,
                LEFT + pw,
                LEFT + pw - 4.0,
                y - 5.0,
                escape(&r.label)
            );
        }
        for r in &self.v_rules {
            let x = sx(r.at);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ff7f0e" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" fill="#ff7f0e">{}</text>"##,
                TOP + ph,
                x + 4.0,
                TOP + 14.0,
                escape(&r.label)
            );
        }
        for ser in &self.series {
            let path: Vec<String> = ser
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                ser.color,
                path.join(" ")
            );
            if ser.dots {
                for (x, y) in &ser.points {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                        sx(*x),
                        sy(*y),
                        ser.color
                    );
                }
            }
        }
        for (i, ser) in self.series.iter().enumerate() {
            let y = TOP + 16.0 + i as f64 * 18.0;
            let x = LEFT + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                x + 22.0,
                ser.color,
                x + 28.0,
                y + 4.0,
                escape(&ser.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_ticks() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(230.0), 500.0);
        let (lo, hi, t) = linear_ticks(0.0, 9.3, 5);
        assert_eq!((lo, hi), (0.0, 10.0));
        assert_eq!(t, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let (lo, hi, t) = log_ticks(0.3, 40.0);
        assert_eq!((lo, hi), (0.1, 100.0));
        assert!(t.contains(&1.0) && t.contains(&50.0) && t.contains(&0.2));
        // A flat range still gets an axis.
        let (lo, hi, _) = linear_ticks(5.0, 5.0, 5);
        assert!(hi > lo);
    }

    #[test]
    fn labels_have_no_float_noise() {
        assert_eq!(label(0.30000000000000004), "0.3");
        assert_eq!(label(2.0), "2");
        assert_eq!(label(15_000.0), "15k");
        assert_eq!(label(2_500_000.0), "2.5M");
        assert_eq!(label(0.0), "0");
    }

    #[test]
    fn renders_a_well_formed_deterministic_chart() {
        let chart = Chart {
            title: "Join latency <p1 & p2>".into(),
            x_label: "ms".into(),
            y_label: "fraction".into(),
            series: vec![
                Series {
                    name: "protocol 1".into(),
                    points: vec![(0.5, 0.1), (1.0, 0.5), (3.0, 1.0)],
                    color: COLORS[0],
                    dots: false,
                },
                Series {
                    name: "protocol 2".into(),
                    points: vec![(0.4, 0.2), (2.0, 1.0)],
                    color: COLORS[1],
                    dots: true,
                },
            ],
            h_rules: vec![],
            v_rules: vec![Rule {
                at: 3.0,
                label: "target p99".into(),
            }],
            x_log: true,
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("Join latency &lt;p1 &amp; p2&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(svg, chart.render());
        // Every opened element is closed or self-closed.
        let opens = svg.matches("<text").count();
        assert_eq!(opens, svg.matches("</text>").count());
    }

    #[test]
    fn empty_chart_still_renders() {
        let svg = Chart::default().render();
        assert!(svg.contains("<svg") && !svg.contains("NaN"));
    }
}

//! The one JSON line a scenario prints: its parameters, its figures, the correctness
//! checks (any failure makes the exit status non-zero) and the targets of issue 5 with
//! whether this run met them (a miss fails the run only with `--strict`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// A figure compared with its target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// Stable key, e.g. `join_p99_ms`.
    pub name: String,
    /// What it measures, for the report.
    pub what: String,
    pub value: Option<f64>,
    pub limit: f64,
    pub unit: String,
    /// `<=` (at most), `<` (under), `>=` (at least) or `>` (over).
    pub cmp: String,
    pub met: bool,
    /// The reference Node implementation's figure, as quoted in the issue.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reference: Option<String>,
}

impl Target {
    /// How far from the limit, as a sentence fragment (`"2.1x over"`, `"met"`).
    pub fn gap(&self) -> String {
        match self.value {
            None => "not measured".into(),
            Some(_) if self.met => "met".into(),
            Some(v) if self.cmp.starts_with('<') && self.limit > 0.0 => {
                format!("{:.2}x the limit", v / self.limit)
            }
            Some(v) if self.limit > 0.0 => format!("{:.0}% of the target", 100.0 * v / self.limit),
            Some(_) => "missed".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub scenario: String,
    pub ok: bool,
    pub params: Value,
    pub checks: Vec<Check>,
    pub targets: Vec<Target>,
    pub results: Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(scenario: &str, params: Value) -> Outcome {
        Outcome {
            scenario: scenario.into(),
            ok: true,
            params,
            checks: Vec::new(),
            targets: Vec::new(),
            results: Value::Object(Default::default()),
            error: None,
        }
    }

    pub fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.ok &= ok;
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }

    /// Records a figure against a limit: `("<=", 3.0)` is "at most 3".
    pub fn target(
        &mut self,
        name: &str,
        what: &str,
        value: Option<f64>,
        (cmp, limit): (&str, f64),
        unit: &str,
        reference: Option<&str>,
    ) {
        let met = match (value, cmp) {
            (Some(v), "<=") => v <= limit,
            (Some(v), "<") => v < limit,
            (Some(v), ">=") => v >= limit,
            (Some(v), ">") => v > limit,
            _ => false,
        };
        self.targets.push(Target {
            name: name.into(),
            what: what.into(),
            value: value.map(|v| crate::stats::round(v, 3)),
            limit,
            unit: unit.into(),
            cmp: cmp.into(),
            met,
            reference: reference.map(Into::into),
        });
    }

    /// Sets `results[key] = value`.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        if let Value::Object(m) = &mut self.results {
            m.insert(
                key.into(),
                serde_json::to_value(value).unwrap_or(Value::Null),
            );
        }
    }

    /// A scenario that could not run at all.
    pub fn failed(scenario: &str, params: Value, err: &anyhow::Error) -> Outcome {
        let mut o = Outcome::new(scenario, params);
        o.error = Some(format!("{err:#}"));
        o.ok = false;
        o
    }

    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("outcome serialises")
    }

    /// 0 when every check passed (and, with `strict`, every target was met), else 1.
    pub fn exit_code(&self, strict: bool) -> i32 {
        let targets_ok = !strict || self.targets.iter().all(|t| t.met);
        if self.ok && targets_ok {
            0
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_decide_ok_and_targets_only_under_strict() {
        let mut o = Outcome::new("converge", json!({"rooms": 2}));
        o.check("rosters_exact", true, "2/2");
        o.target(
            "join_p99_ms",
            "join p99",
            Some(4.0),
            ("<=", 3.0),
            "ms",
            Some("11.5 ms"),
        );
        o.target(
            "connections",
            "reached",
            Some(19_500.0),
            (">=", 19_000.0),
            "",
            None,
        );
        assert!(o.ok);
        assert!(!o.targets[0].met && o.targets[1].met);
        assert_eq!(o.exit_code(false), 0);
        assert_eq!(o.exit_code(true), 1);
        assert_eq!(o.targets[0].gap(), "1.33x the limit");
        assert_eq!(o.targets[1].gap(), "met");
        o.check("no_errors", false, "3 error frames");
        assert!(!o.ok);
        assert_eq!(o.exit_code(false), 1);
    }

    #[test]
    fn one_json_line_that_round_trips() {
        let mut o = Outcome::new("storm", json!({"clients": 10}));
        o.set("join_ms", 1.25);
        o.target("x", "x", None, ("<=", 1.0), "ms", None);
        let line = o.line();
        assert!(!line.contains('\n'));
        let back: Outcome = serde_json::from_str(&line).unwrap();
        assert_eq!(back.scenario, "storm");
        assert_eq!(back.results["join_ms"], 1.25);
        assert!(!back.targets[0].met);
        assert_eq!(back.targets[0].gap(), "not measured");
        let err = Outcome::failed("soak", json!({}), &anyhow::anyhow!("boom"));
        assert!(!err.ok && err.line().contains("boom"));
    }
}

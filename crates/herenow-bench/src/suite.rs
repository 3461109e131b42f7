//! `suite`: runs every scenario as its own process (fresh descriptors and memory each,
//! and the exact command line to quote), collects their JSON lines and raw series, draws
//! the plots and writes `docs/BENCHMARKS.md`.

use crate::report::Outcome;
use crate::stats::cdf_points;
use crate::svg::{Chart, Rule, Series, COLORS};
use crate::sys::Machine;
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One scenario run of a profile.
#[derive(Debug, Clone)]
pub struct Step {
    /// Stable key the plots look results up by.
    pub key: &'static str,
    pub title: &'static str,
    /// Subcommand and its flags.
    pub args: Vec<String>,
    /// Runs of the same command; the report quotes the median of each target.
    pub repeat: usize,
}

fn step(key: &'static str, title: &'static str, args: &str) -> Step {
    Step {
        key,
        title,
        args: args.split_whitespace().map(str::to_string).collect(),
        repeat: 1,
    }
}

impl Step {
    fn times(mut self, repeat: usize) -> Step {
        self.repeat = repeat.max(1);
        self
    }
}

/// The default suite: the sizes of the issues' targets, each step repeated (medians are
/// quoted), about 12 minutes on 2 cores.
pub fn full() -> Vec<Step> {
    vec![
        step(
            "converge-p1",
            "Serial join and leave convergence, protocol 1",
            "converge --rooms 10 --clients 100 --instances 2 --redis --proto 1 --grace-leaves 10",
        )
        .times(5),
        step(
            "converge-p2",
            "Serial join and leave convergence, protocol 2",
            "converge --rooms 10 --clients 100 --instances 2 --redis --proto 2 --grace-leaves 10",
        )
        .times(5),
        step(
            "paced-p1",
            "A meeting starting: 50 joins a second into one room, protocol 1",
            "converge --rooms 1 --clients 100 --instances 2 --redis --proto 1 --pace-ms 20 --grace-leaves 0",
        )
        // 99 joins a run: p99 is the slowest but one, so the median of five runs.
        .times(5),
        step(
            "paced-p2",
            "A meeting starting: 50 joins a second into one room, protocol 2",
            "converge --rooms 1 --clients 100 --instances 2 --redis --proto 2 --pace-ms 20 --grace-leaves 0",
        )
        // 99 joins a run: p99 is the slowest but one, so the median of five runs.
        .times(5),
        step(
            "storm-p1",
            "Join storm, protocol 1, one instance",
            "storm --rooms 10 --clients 100 --proto 1",
        )
        .times(5),
        step(
            "storm-p2",
            "Join storm, protocol 2, one instance",
            "storm --rooms 10 --clients 100 --proto 2",
        )
        .times(5),
        step(
            "storm-p1-redis",
            "Join storm, protocol 1, two instances + Redis",
            "storm --rooms 10 --clients 100 --proto 1 --instances 2 --redis",
        )
        .times(5),
        step(
            "storm-p2-redis",
            "Join storm, protocol 2, two instances + Redis",
            "storm --rooms 10 --clients 100 --proto 2 --instances 2 --redis",
        )
        .times(5),
        step(
            "soak",
            "Idle soak, two instances + Redis",
            "soak --conns 10000 --rooms 100 --seconds 30 --instances 2 --redis --proto 2",
        )
        .times(3),
        step(
            "fanout",
            "Fan-out in a 10,000-member room",
            "fanout --members 10000 --changes 20",
        )
        .times(3),
        step("capacity", "Capacity and memory per connection", "capacity").times(3),
        step(
            "faults",
            "Faults: kill -9 an instance; a 10 s Redis outage",
            "faults",
        )
        .times(3),
    ]
}

/// Every scenario at a tiny size (seconds, debug build), once: the tool cannot rot. Only
/// `faults` needs Redis.
pub fn smoke() -> Vec<Step> {
    vec![
        step("converge-p1", "converge, protocol 1",
             "converge --rooms 2 --clients 4 --instances 1 --proto 1 --grace-leaves 2 --grace-ms 200"),
        step("converge-p2", "converge, protocol 2",
             "converge --rooms 2 --clients 4 --instances 1 --proto 2 --grace-leaves 2 --grace-ms 200"),
        step("paced-p1", "paced joins, protocol 1",
             "converge --rooms 1 --clients 4 --instances 1 --proto 1 --pace-ms 20 --grace-leaves 0 --grace-ms 200"),
        step("storm-p1", "storm, protocol 1", "storm --rooms 2 --clients 5 --proto 1"),
        step("storm-p2", "storm, protocol 2", "storm --rooms 2 --clients 5 --proto 2"),
        step("soak", "soak", "soak --conns 20 --rooms 2 --seconds 2 --heartbeat-ms 500"),
        step("fanout", "fanout", "fanout --members 20 --changes 3 --gap-ms 50"),
        step("capacity", "capacity",
             "capacity --max 200 --burst 100 --step 50 --curve-max 100 --room-size 10"),
        step("faults", "faults (Redis)",
             "faults --rooms 2 --clients 4 --outage-secs 1 --recover-timeout-secs 20 \
              --env GRACE_MS=200 --env HEARTBEAT_MS=300 --env STALE_MS=3000 --env LEASE_MS=1200 --env REAP_MS=300"),
    ]
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct Ran {
    pub step: Step,
    /// The command as it can be pasted from the repository root.
    pub command: String,
    /// The median run (by its first target), whose figures and series the report shows.
    pub outcome: Outcome,
    pub data: Value,
    /// Every run, in order (the median one among them).
    pub runs: Vec<Outcome>,
    /// All runs together.
    pub wall: Duration,
}

/// A target over every run of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub target: crate::report::Target,
    /// Every run's value, in run order.
    pub values: Vec<f64>,
}

impl Ran {
    /// Each target of the step with the median of its values over the runs (and `met`
    /// judged on that median).
    pub fn summaries(&self) -> Vec<Summary> {
        self.outcome
            .targets
            .iter()
            .map(|t| {
                let values: Vec<f64> = self
                    .runs
                    .iter()
                    .filter_map(|o| o.targets.iter().find(|x| x.name == t.name)?.value)
                    .collect();
                let mut target = t.clone();
                target.value = median(&values);
                target.met = target.value.is_some_and(|v| meets(v, &t.cmp, t.limit));
                Summary { target, values }
            })
            .collect()
    }
}

fn meets(v: f64, cmp: &str, limit: f64) -> bool {
    match cmp {
        "<=" => v <= limit,
        "<" => v < limit,
        ">=" => v >= limit,
        ">" => v > limit,
        _ => false,
    }
}

/// The median (the lower middle of an even count, so it is a value that was measured).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// Which run is the median one by its first target (the first run without targets).
fn median_run(runs: &[Outcome]) -> usize {
    let key = |o: &Outcome| o.targets.first().and_then(|t| t.value);
    let mut order: Vec<usize> = (0..runs.len())
        .filter(|&i| key(&runs[i]).is_some())
        .collect();
    if order.is_empty() {
        return 0;
    }
    order.sort_by(|&a, &b| key(&runs[a]).unwrap().total_cmp(&key(&runs[b]).unwrap()));
    order[(order.len() - 1) / 2]
}

/// Options of `suite`.
#[derive(Debug, Clone)]
pub struct SuiteOpts {
    pub profile: String,
    pub bin: PathBuf,
    pub out: PathBuf,
    pub plots: PathBuf,
    pub notes: Option<PathBuf>,
    pub step_timeout: Duration,
    pub only: Vec<String>,
}

/// A path as the report shows it: relative to the working directory when inside it.
fn display_path(p: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    p.strip_prefix(&cwd).unwrap_or(p).display().to_string()
}

pub async fn run(opts: &SuiteOpts) -> Result<i32> {
    let steps = match opts.profile.as_str() {
        "full" => full(),
        "smoke" => smoke(),
        other => anyhow::bail!("unknown profile {other:?} (full or smoke)"),
    };
    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("herenow-bench-suite-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let started = Instant::now();
    let mut ran = Vec::new();
    for s in steps {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == s.key) {
            continue;
        }
        let data_path = tmp.join(format!("{}.json", s.key));
        let mut args = s.args.clone();
        args.extend(["--bin".into(), display_path(&opts.bin)]);
        let command = format!("{} {}", display_path(&exe), args.join(" "));
        let t = Instant::now();
        let mut runs = Vec::new();
        let mut datas = Vec::new();
        for i in 0..s.repeat {
            eprintln!("suite: [{}/{}] {command}", i + 1, s.repeat);
            let _ = std::fs::remove_file(&data_path);
            let outcome = run_once(&exe, &args, &data_path, opts.step_timeout, s.key).await?;
            println!("{}", outcome.line());
            runs.push(outcome);
            datas.push(
                std::fs::read(&data_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null),
            );
        }
        let wall = t.elapsed();
        let mid = median_run(&runs);
        let mut outcome = runs[mid].clone();
        // A step passes its checks only if every run did.
        if let Some(bad) = runs.iter().find(|o| !o.ok) {
            outcome.ok = false;
            outcome.error = outcome.error.or_else(|| bad.error.clone());
            for c in bad.checks.iter().filter(|c| !c.ok) {
                if !outcome.checks.contains(c) {
                    outcome.checks.push(c.clone());
                }
            }
        }
        ran.push(Ran {
            step: s,
            command,
            outcome,
            data: datas.swap_remove(mid),
            runs,
            wall,
        });
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let total = started.elapsed();

    std::fs::create_dir_all(&opts.plots)?;
    let plots = draw_plots(&ran);
    for (name, svg) in &plots {
        std::fs::write(opts.plots.join(name), svg)?;
    }
    let rel_plots = relative(&opts.plots, opts.out.parent().unwrap_or(Path::new(".")));
    let notes = opts
        .notes
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok());
    let md = markdown(
        &Header {
            profile: opts.profile.clone(),
            generated: utc_now(),
            commit: git_commit(),
            machine: Machine::describe(),
            total,
            plots_dir: rel_plots,
            plots: plots.iter().map(|(n, _)| n.clone()).collect(),
            notes,
        },
        &ran,
    );
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.out, md)?;
    eprintln!(
        "suite: wrote {} in {:.0} s",
        opts.out.display(),
        total.as_secs_f64()
    );
    Ok(if ran.iter().all(|r| r.outcome.ok) {
        0
    } else {
        1
    })
}

/// One run of a scenario as its own process: its JSON line.
async fn run_once(
    exe: &Path,
    args: &[String],
    data_path: &Path,
    step_timeout: Duration,
    key: &str,
) -> Result<Outcome> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args)
        .arg("--data-out")
        .arg(data_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let out = tokio::time::timeout(step_timeout, cmd.output()).await;
    Ok(match out {
        Ok(Ok(o)) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            match stdout.lines().rev().find(|l| l.starts_with('{')) {
                Some(line) => {
                    serde_json::from_str(line).with_context(|| format!("parsing {line}"))?
                }
                None => Outcome::failed(
                    key,
                    Value::Null,
                    &anyhow::anyhow!("no JSON line (exit status {})", o.status),
                ),
            }
        }
        Ok(Err(e)) => Outcome::failed(key, Value::Null, &e.into()),
        Err(_) => Outcome::failed(
            key,
            Value::Null,
            &anyhow::anyhow!("killed after {step_timeout:?}"),
        ),
    })
}

/// `to` relative to `from` when it is below it (the report links its plots).
fn relative(to: &Path, from: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (to, from) = (abs(to), abs(from));
    to.strip_prefix(&from)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| to.display().to_string())
}

/// What the report's header says.
pub struct Header {
    pub profile: String,
    pub generated: String,
    pub commit: String,
    pub machine: Machine,
    pub total: Duration,
    pub plots_dir: String,
    pub plots: Vec<String>,
    pub notes: Option<String>,
}

fn find<'a>(ran: &'a [Ran], key: &str) -> Option<&'a Ran> {
    ran.iter().find(|r| r.step.key == key)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The plots: join-latency distribution (both protocols), memory per connection against
/// connections, and the fan-out delivery distribution.
pub fn draw_plots(ran: &[Ran]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut series = Vec::new();
    for (i, key) in ["converge-p1", "converge-p2"].iter().enumerate() {
        if let Some(r) = find(ran, key) {
            let s = floats(&r.data["join_ms"]);
            if !s.is_empty() {
                series.push(Series {
                    name: format!("protocol {} ({} joins)", i + 1, s.len()),
                    points: cdf_points(&s, 400),
                    color: COLORS[i],
                    dots: false,
                });
            }
        }
    }
    if !series.is_empty() {
        let chart = Chart {
            title: "Join convergence latency (hello -> every other client has the roster)".into(),
            x_label: "milliseconds (log scale)".into(),
            y_label: "fraction of joins converged".into(),
            series,
            h_rules: vec![Rule {
                at: 0.99,
                label: "p99".into(),
            }],
            v_rules: vec![Rule {
                at: 3.0,
                label: "target p99 3 ms".into(),
            }],
            x_log: true,
        };
        out.push(("join-latency.svg".to_string(), chart.render()));
    }
    if let Some(r) = find(ran, "capacity") {
        let pts = |k: &str| -> Vec<(f64, f64)> {
            r.data[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| Some((p["conns"].as_f64()?, p["kib_per_conn"].as_f64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut series = vec![
            Series {
                name: "grown in steps (fresh server)".into(),
                points: pts("curve"),
                color: COLORS[0],
                dots: true,
            },
            Series {
                name: "after a burst, then steps to the limit".into(),
                points: pts("ramp"),
                color: COLORS[1],
                dots: true,
            },
        ];
        if let Some(s) = find(ran, "soak") {
            let p = &s.data["soak_point"];
            if let (Some(n), Some(k)) = (p[0].as_f64(), p[1].as_f64()) {
                let inst = s.data["instances"].as_f64().unwrap_or(1.0).max(1.0);
                series.push(Series {
                    name: "soak, Redis store (per instance)".into(),
                    points: vec![(n / inst, k)],
                    color: COLORS[2],
                    dots: true,
                });
            }
        }
        series.retain(|s| !s.points.is_empty());
        let chart = Chart {
            title: "Server RSS per idle connection (over the idle server)".into(),
            x_label: "connections held by the instance".into(),
            y_label: "KiB per connection".into(),
            series,
            h_rules: vec![Rule {
                at: 8.0,
                label: "target 8 KiB".into(),
            }],
            v_rules: vec![],
            x_log: false,
        };
        out.push(("memory-per-connection.svg".to_string(), chart.render()));
    }
    if let Some(r) = find(ran, "fanout") {
        let pts: Vec<(f64, f64)> = r.data["receive_ms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        if !pts.is_empty() {
            let chart = Chart {
                title: "Fan-out: state change -> each member has it".into(),
                x_label: "milliseconds".into(),
                y_label: "fraction of deliveries".into(),
                series: vec![Series {
                    name: "all members x all changes".into(),
                    points: pts,
                    color: COLORS[3],
                    dots: false,
                }],
                h_rules: vec![Rule {
                    at: 0.99,
                    label: "p99".into(),
                }],
                v_rules: vec![Rule {
                    at: 100.0,
                    label: "target p99 100 ms".into(),
                }],
                x_log: false,
            };
            out.push(("fanout-latency.svg".to_string(), chart.render()));
        }
    }
    out
}

/// A number as the report prints it.
pub fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        let s = format!("{}", v as i64);
        // Thousands separators for big counts.
        if v.abs() >= 10_000.0 {
            let neg = s.starts_with('-');
            let digits: Vec<char> = s.trim_start_matches('-').chars().collect();
            let mut out = String::new();
            for (i, ch) in digits.iter().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(*ch);
            }
            return if neg { format!("-{out}") } else { out };
        }
        s
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => n.as_f64().map(fmt_num).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Rows `(key, value)` of a results object: nested objects flattened with dots, latency
/// distributions on one row, long arrays summarised.
pub fn flatten(prefix: &str, v: &Value, rows: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if m.contains_key("p50") && m.contains_key("p99") => {
            rows.push((
                format!("{prefix} (ms: p50 / p95 / p99 / max, n)"),
                format!(
                    "{} / {} / {} / {}, n={}",
                    fmt_value(&m["p50"]),
                    fmt_value(&m["p95"]),
                    fmt_value(&m["p99"]),
                    fmt_value(&m["max"]),
                    fmt_value(&m["n"])
                ),
            ));
        }
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        Value::Array(a) if a.len() > 4 || a.iter().any(|x| x.is_object() || x.is_array()) => {
            rows.push((
                prefix.to_string(),
                format!("{} entries (JSON line)", a.len()),
            ));
        }
        other => rows.push((prefix.to_string(), fmt_value(other))),
    }
}

/// The whole of `BENCHMARKS.md`.
pub fn markdown(h: &Header, ran: &[Ran]) -> String {
    let mut s = String::new();
    let m = &h.machine;
    let _ = writeln!(s, "# herenow benchmarks\n");
    let _ = writeln!(
        s,
        "Generated by `make bench` (profile `{}`) on {} at commit `{}`; the suite took {:.0} s. \
         Do not edit by hand: `make bench` rewrites this file and the plots. Each figure below \
         comes with the exact command that produced it (run from the repository root after \
         `cargo build --release -p herenow -p herenow-bench`); every scenario starts its own \
         herenow processes and `redis-server` on free loopback ports and prints one JSON line.\n",
        h.profile,
        h.generated,
        h.commit,
        h.total.as_secs_f64()
    );
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} x {} |", m.cores, m.cpu);
    let _ = writeln!(s, "| Memory | {:.1} GiB |", m.mem_gib);
    let _ = writeln!(s, "| OS | {} (kernel {}) |", m.os, m.kernel);
    let _ = writeln!(s, "| Open files (hard limit) | {} |", m.nofile_hard);
    let _ = writeln!(
        s,
        "| somaxconn / ephemeral ports | {} / {} |",
        m.somaxconn, m.port_range
    );
    let _ = writeln!(s, "| Toolchain | {} |", m.rustc);
    let _ = writeln!(s, "| Redis | {} |", m.redis);
    let _ = writeln!(
        s,
        "\nServer instances, Redis and the load generator share these {} cores: every latency \
         includes the load generator's own scheduling.\n",
        m.cores
    );

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(
        s,
        "Each figure is the median of the step's runs (the lower middle of an even count); \
         the runs column lists every run's figure in order. Targets of issue 5, as revised by \
         issue 8 (fan-out budget, no flicker).\n"
    );
    let _ = writeln!(
        s,
        "| Target | Measured (median) | Runs | Limit | Reference | Result | Scenario |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in ran {
        for Summary { target: t, values } in r.summaries() {
            let measured = t
                .value
                .map(|v| format!("{} {}", fmt_num(v), t.unit))
                .unwrap_or_else(|| "not measured".into());
            let runs = values
                .iter()
                .map(|v| fmt_num(*v))
                .collect::<Vec<_>>()
                .join(", ");
            let result = if t.met {
                "met".to_string()
            } else {
                format!("**missed** ({})", t.gap())
            };
            let limit = format!(
                "{} {} {}",
                t.cmp.replace('<', "&lt;").replace('>', "&gt;"),
                fmt_num(t.limit),
                t.unit
            );
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | [{}](#{}) |",
                t.what,
                measured.trim(),
                runs,
                limit.trim(),
                t.reference.as_deref().unwrap_or("-"),
                result,
                r.step.key,
                r.step.key
            );
        }
    }
    let failed: Vec<&Ran> = ran.iter().filter(|r| !r.outcome.ok).collect();
    if failed.is_empty() {
        let _ = writeln!(s, "\nEvery correctness check passed (exact rosters, no error frames, no unexpected closes).\n");
    } else {
        let _ = writeln!(
            s,
            "\n**Correctness checks failed in:** {}.\n",
            failed
                .iter()
                .map(|r| format!("[{}](#{})", r.step.key, r.step.key))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if !h.plots.is_empty() {
        let _ = writeln!(s, "## Plots\n");
        for p in &h.plots {
            let _ = writeln!(s, "![{p}]({}/{p})\n", h.plots_dir);
        }
    }

    let _ = writeln!(s, "## Scenarios\n");
    for r in ran {
        let o = &r.outcome;
        let _ = writeln!(
            s,
            "<a id=\"{}\"></a>\n### {}: {}\n",
            r.step.key, r.step.key, r.step.title
        );
        let _ = writeln!(s, "```sh\n{}\n```\n", r.command);
        let runs = match r.runs.len() {
            0 | 1 => String::new(),
            n => {
                format!(" {n} runs; the figures below are the median run's (by its first target).")
            }
        };
        let _ = writeln!(
            s,
            "{} in {:.1} s.{runs}{}\n",
            if o.ok {
                "Checks passed"
            } else {
                "**Checks failed**"
            },
            r.wall.as_secs_f64(),
            o.error
                .as_ref()
                .map(|e| format!(" Error: `{e}`"))
                .unwrap_or_default()
        );
        let mut rows = Vec::new();
        flatten("", &o.results, &mut rows);
        if !rows.is_empty() {
            let _ = writeln!(s, "| Figure | Value |\n|---|---|");
            for (k, v) in rows {
                // Keys too: commandstats names such as `client|id` carry a pipe.
                let _ = writeln!(
                    s,
                    "| {} | {} |",
                    k.replace('|', "\\|"),
                    v.replace('|', "\\|")
                );
            }
            s.push('\n');
        }
        if !o.checks.is_empty() {
            for c in &o.checks {
                let _ = writeln!(
                    s,
                    "- {} `{}`: {}",
                    if c.ok { "ok" } else { "**FAILED**" },
                    c.name,
                    c.detail
                );
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "<details><summary>JSON line</summary>\n\n```json\n{}\n```\n</details>\n",
            o.line()
        );
    }
    if let Some(notes) = &h.notes {
        let _ = writeln!(s, "## Analysis\n");
        let _ = writeln!(s, "{}", notes.trim());
    }
    s
}

/// `YYYY-MM-DD HH:MM UTC` from the system clock.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (civil-from-days, proleptic Gregorian).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn git_commit() -> String {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let sha = out(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{sha} (with local changes)")
    } else {
        sha
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_763_888_410), "2025-11-23 09:00 UTC");
    }

    #[test]
    fn numbers_print_plainly() {
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(19_936.0), "19,936");
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(2.345), "2.35");
        assert_eq!(fmt_num(0.0123), "0.012");
        assert_eq!(fmt_num(123.45), "123.5");
    }

    #[test]
    fn results_flatten_into_rows() {
        let mut rows = Vec::new();
        let v = json!({
            "join_ms": {"n": 10, "min": 0.1, "p50": 1.0, "p90": 1.5, "p95": 2.0, "p99": 3.0, "max": 4.0, "mean": 1.2},
            "redis": {"sent": 2.0, "by": {"evalsha": 1.0}},
            "curve": [{"conns": 1}, {"conns": 2}],
            "small": [1, 2],
            "none": null,
        });
        flatten("", &v, &mut rows);
        let get = |k: &str| {
            rows.iter()
                .find(|(a, _)| a.starts_with(k))
                .map(|(_, b)| b.clone())
        };
        assert_eq!(get("join_ms").unwrap(), "1 / 2 / 3 / 4, n=10");
        assert_eq!(get("redis.sent").unwrap(), "2");
        assert_eq!(get("redis.by.evalsha").unwrap(), "1");
        assert_eq!(get("curve").unwrap(), "2 entries (JSON line)");
        assert_eq!(get("small").unwrap(), "[1,2]");
        assert_eq!(get("none").unwrap(), "-");
    }

    fn fake_run() -> Vec<Ran> {
        let mut o = Outcome::new("converge", json!({"rooms": 10}));
        o.check("rosters_exact", true, "all exact");
        o.target(
            "join_p99_ms",
            "join p99",
            Some(4.5),
            ("<=", 3.0),
            "ms",
            Some("11.5 ms"),
        );
        o.set(
            "join_ms",
            json!({"n": 3, "p50": 1.0, "p95": 2.0, "p99": 4.5, "max": 4.5}),
        );
        let mut cap = Outcome::new("capacity", json!({}));
        cap.target(
            "capacity_connections",
            "connections",
            Some(19_936.0),
            (">=", 19_000.0),
            "",
            None,
        );
        let mut faster = o.clone();
        faster.targets[0].value = Some(2.5);
        let mut slowest = o.clone();
        slowest.targets[0].value = Some(9.0);
        vec![
            Ran {
                step: step("converge-p1", "Convergence p1", "converge --rooms 10").times(3),
                command: "target/release/herenow-bench converge --rooms 10".into(),
                outcome: o.clone(),
                data: json!({"join_ms": [1.0, 2.0, 4.5]}),
                runs: vec![slowest, o, faster],
                wall: Duration::from_secs(3),
            },
            Ran {
                step: step("capacity", "Capacity", "capacity"),
                command: "target/release/herenow-bench capacity".into(),
                outcome: cap.clone(),
                data: json!({"curve": [{"conns": 1000, "kib_per_conn": 6.0}], "ramp": []}),
                runs: vec![cap],
                wall: Duration::from_secs(9),
            },
        ]
    }

    #[test]
    fn report_has_commands_targets_and_plots() {
        let ran = fake_run();
        let plots = draw_plots(&ran);
        let names: Vec<&str> = plots.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["join-latency.svg", "memory-per-connection.svg"]);
        let h = Header {
            profile: "full".into(),
            generated: "2025-01-01 00:00 UTC".into(),
            commit: "abc123".into(),
            machine: Machine::describe(),
            total: Duration::from_secs(12),
            plots_dir: "bench".into(),
            plots: names.iter().map(|s| s.to_string()).collect(),
            notes: Some("Hand-written notes.".into()),
        };
        let md = markdown(&h, &ran);
        assert!(md.contains("```sh\ntarget/release/herenow-bench converge --rooms 10\n```"));
        assert!(md.contains(
            "| join p99 | 4.50 ms | 9, 4.50, 2.50 | &lt;= 3 ms | 11.5 ms | **missed** (1.50x the limit)"
        ), "{md}");
        assert!(md.contains("| connections | 19,936 | 19,936 | &gt;= 19,000 | - | met |"));
        assert!(md.contains("3 runs; the figures below are the median run's"));
        assert!(md.contains("![join-latency.svg](bench/join-latency.svg)"));
        assert!(
            md.contains("| join_ms (ms: p50 / p95 / p99 / max, n) | 1 / 2 / 4.50 / 4.50, n=3 |")
        );
        assert!(md.contains("## Analysis\n\nHand-written notes."));
        assert!(md.contains("Every correctness check passed"));
    }

    #[test]
    fn the_median_run_and_median_figures() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0), "lower middle");
        assert_eq!(median(&[]), None);
        let ran = fake_run();
        let s = ran[0].summaries();
        assert_eq!(s[0].target.value, Some(4.5));
        assert!(!s[0].target.met);
        assert_eq!(median_run(&ran[0].runs), 1);
    }

    #[test]
    fn profiles_parse_as_subcommands() {
        use clap::Parser;
        for s in full().into_iter().chain(smoke()) {
            let mut argv = vec!["herenow-bench".to_string()];
            argv.extend(s.args.clone());
            crate::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{}: {e}", s.key));
        }
    }
}

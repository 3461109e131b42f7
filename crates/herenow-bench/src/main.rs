//! `herenow-bench`: load generator and report for herenow.
//!
//! Every scenario starts its own herenow instances (and `redis-server` when it needs
//! one) on free loopback ports, drives them through the wire protocol alone (protocol 1
//! or 2 of docs/ARCHITECTURE.md, no dependency on the server crate), prints one JSON line and exits
//! non-zero when a correctness check fails (`--strict`: also when a target is missed).
//! `suite` runs them all and writes `docs/BENCHMARKS.md` with its plots.
//!
//! Map: `wire` (frames, roster folding) -> `client` (one task per socket, timestamps)
//! -> `scenarios/*` (what to do and measure) -> `report` (the JSON line) -> `suite`
//! (processes, markdown) with `svg` (plots); `servers`, `redis`, `sys` talk to the
//! processes and the kernel; `stats` holds the percentiles.

mod client;
mod redis;
mod report;
mod scenarios;
mod servers;
mod stats;
mod suite;
mod svg;
mod sys;
mod wire;
mod ws;

use clap::{Parser, Subcommand};
use scenarios::{capacity, converge, fanout, faults, soak, storm, Common};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "herenow-bench",
    version,
    about = "Load generator and report for herenow"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// The herenow binary to start.
    #[arg(
        long,
        global = true,
        env = "HERENOW_BIN",
        default_value = "target/release/herenow"
    )]
    bin: PathBuf,
    /// Extra server environment, KEY=VALUE (repeatable; wins over the bench's defaults).
    #[arg(long = "env", global = true, value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Exit non-zero when a target is missed, not only when a check fails.
    #[arg(long, global = true)]
    strict: bool,
    /// Write the raw series (latency samples, memory points) to this JSON file.
    #[arg(long, global = true)]
    data_out: Option<PathBuf>,
    /// Give up on a scenario after this many seconds.
    #[arg(long, global = true, default_value_t = 900)]
    max_secs: u64,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Join and leave convergence latency, bytes and Redis calls per join.
    Converge(converge::ConvergeArgs),
    /// Everyone joins at once, then everyone leaves at once.
    Storm(storm::StormArgs),
    /// Idle connections: RSS, CPU, bytes and Redis commands at rest.
    Soak(soak::SoakArgs),
    /// One state change in a big room: time until every member has it.
    Fanout(fanout::FanoutArgs),
    /// Connections until the ceiling or the first failure; memory per connection.
    Capacity(capacity::CapacityArgs),
    /// kill -9 an instance; stop Redis and bring it back.
    Faults(faults::FaultsArgs),
    /// Run every scenario and write the report.
    Suite(SuiteArgs),
}

#[derive(Debug, clap::Args)]
struct SuiteArgs {
    /// `full` (the targets' sizes, minutes) or `smoke` (tiny, seconds).
    #[arg(long, default_value = "full")]
    profile: String,
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Where the SVG plots go.
    #[arg(long, default_value = "docs/bench")]
    plots: PathBuf,
    /// Hand-written analysis appended to the report, if the file exists.
    #[arg(long, default_value = "docs/bench/NOTES.md")]
    notes: PathBuf,
    /// Run only these steps (keys such as `storm-p1`; repeatable).
    #[arg(long)]
    only: Vec<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

fn main() {
    let cli = Cli::parse();
    let (soft, _) = sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async {
        tokio::select! {
            code = run(&cli, soft) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("herenow-bench: interrupted");
                130
            }
        }
    });
    // Dropping the runtime drops every client and kills every child process.
    drop(rt);
    std::process::exit(code);
}

async fn run(cli: &Cli, nofile: u64) -> i32 {
    let bin = std::path::absolute(&cli.bin).unwrap_or_else(|_| cli.bin.clone());
    if let Cmd::Suite(s) = &cli.cmd {
        let opts = suite::SuiteOpts {
            profile: s.profile.clone(),
            bin,
            out: s.out.clone(),
            plots: s.plots.clone(),
            notes: Some(s.notes.clone()),
            step_timeout: Duration::from_secs(cli.max_secs),
            only: s.only.clone(),
        };
        return match suite::run(&opts).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("herenow-bench suite: {e:#}");
                2
            }
        };
    }
    let name = match &cli.cmd {
        Cmd::Converge(_) => "converge",
        Cmd::Storm(_) => "storm",
        Cmd::Soak(_) => "soak",
        Cmd::Fanout(_) => "fanout",
        Cmd::Capacity(_) => "capacity",
        Cmd::Faults(_) => "faults",
        Cmd::Suite(_) => unreachable!(),
    };
    let log_dir = match servers::log_dir(name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("herenow-bench: {e:#}");
            return 2;
        }
    };
    let common = Common {
        launch: servers::Launch {
            bin,
            env: cli.env.clone(),
            log_dir: log_dir.clone(),
        },
        data_out: cli.data_out.clone(),
    };
    eprintln!(
        "herenow-bench {name}: open-file limit {nofile}, server logs in {}",
        log_dir.display()
    );
    let fut = async {
        match &cli.cmd {
            Cmd::Converge(a) => converge::run(&common, a).await,
            Cmd::Storm(a) => storm::run(&common, a).await,
            Cmd::Soak(a) => soak::run(&common, a).await,
            Cmd::Fanout(a) => fanout::run(&common, a).await,
            Cmd::Capacity(a) => capacity::run(&common, a).await,
            Cmd::Faults(a) => faults::run(&common, a).await,
            Cmd::Suite(_) => unreachable!(),
        }
    };
    let load_before = sys::loadavg();
    let mut outcome = match tokio::time::timeout(Duration::from_secs(cli.max_secs), fut).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => report::Outcome::failed(name, serde_json::Value::Null, &e),
        Err(_) => report::Outcome::failed(
            name,
            serde_json::Value::Null,
            &anyhow::anyhow!("gave up after {} s", cli.max_secs),
        ),
    };
    outcome.set("loadavg_1m_before_after", [load_before, sys::loadavg()]);
    println!("{}", outcome.line());
    let code = outcome.exit_code(cli.strict);
    if code == 0 {
        let _ = std::fs::remove_dir_all(&log_dir);
    } else {
        eprintln!(
            "herenow-bench {name}: server logs kept in {}",
            log_dir.display()
        );
    }
    code
}

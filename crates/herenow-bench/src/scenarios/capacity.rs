//! `capacity`: how many idle members one instance holds, and what each costs.
//!
//! Two fresh servers: the first is filled in steps up to `--curve-max` with its RSS read
//! after each step (memory per connection against connections, on a server that only
//! ever grew); the second takes a burst of `--burst` connections at once (the connect
//! rate, the listen backlog), then more steps until `--max` or the first failure.

use super::*;
use crate::client::{wait_until, Client, Signal};
use crate::report::Outcome;
use crate::servers::Herenow;
use crate::stats::round;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct CapacityArgs {
    /// Stop at this many connections (default: the open-file hard limit minus 64, the
    /// headroom both processes need for their other descriptors).
    #[arg(long)]
    pub max: Option<usize>,
    /// Connections opened at once on the second server.
    #[arg(long, default_value_t = 10_000)]
    pub burst: usize,
    /// Connections per step.
    #[arg(long, default_value_t = 1000)]
    pub step: usize,
    /// Size of the memory curve (first server).
    #[arg(long, default_value_t = 10_000)]
    pub curve_max: usize,
    /// Members per room.
    #[arg(long, default_value_t = 20)]
    pub room_size: usize,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub proto: u8,
    /// Handshakes in flight.
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
}

/// One memory reading.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Point {
    conns: usize,
    rss_mib: f64,
    kib_per_conn: f64,
}

/// Opens `count` more connections (handshake + hello) and waits until each holds its
/// first roster. Returns the new clients, the handshake time, the time until joined,
/// and the first error.
async fn grow(
    server: &Herenow,
    signal: &Arc<Signal>,
    from: usize,
    count: usize,
    a: &CapacityArgs,
) -> (Vec<Client>, Duration, Duration, Option<String>) {
    let specs: Vec<Spec> = (from..from + count)
        .map(|n| Spec {
            server: server.addr,
            room_name: room_name("cap", n / a.room_size),
            room: n / a.room_size,
            instance: 0,
            id: format!("q{n}"),
            proto: a.proto,
            watch: None,
            source: client::source_addr(n),
        })
        .collect();
    let t = Instant::now();
    let (clients, open, err) = open_and_join(specs, signal, a.concurrency).await;
    let refs = refs(&clients);
    let got = wait_until(&refs, signal, Duration::from_secs(60), |_, s| s.first_at).await;
    let joined = t.elapsed();
    let mut err = err.map(|(_, e)| format!("{e:#}"));
    let missing = got.iter().filter(|g| g.is_none()).count();
    if err.is_none() && missing > 0 {
        err = Some(format!("{missing} connections got no roster within 60 s"));
    }
    (clients, open, joined, err)
}

fn point(conns: usize, idle_kib: u64, pid: u32) -> Point {
    let rss = crate::sys::sample(pid).map(|s| s.rss_kib).unwrap_or(0);
    Point {
        conns,
        rss_mib: round(rss as f64 / 1024.0, 2),
        kib_per_conn: round(rss.saturating_sub(idle_kib) as f64 / conns.max(1) as f64, 3),
    }
}

pub async fn run(c: &Common, a: &CapacityArgs) -> Result<Outcome> {
    let (_, hard) = crate::sys::raise_nofile();
    let max = a.max.unwrap_or((hard as usize).saturating_sub(64));
    let params = json!({
        "max": max, "burst": a.burst, "step": a.step, "curve_max": a.curve_max,
        "room_size": a.room_size, "proto": a.proto, "concurrency": a.concurrency,
        "nofile_hard_limit": hard,
    });
    let mut o = Outcome::new("capacity", params);
    let step = a.step.max(1);

    // ---- server 1: the memory curve -------------------------------------------------
    let mut curve = Vec::new();
    let idle_kib;
    {
        let cluster = Cluster::start(c.launch.clone(), 1, false).await?;
        let server = &cluster.servers[0];
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle_kib = crate::sys::sample(server.pid)?.rss_kib;
        let signal = Arc::new(Signal::default());
        let mut held: Vec<Client> = Vec::new();
        while held.len() < a.curve_max {
            let n = step.min(a.curve_max - held.len());
            let (more, _, _, err) = grow(server, &signal, held.len(), n, a).await;
            held.extend(more);
            if let Some(e) = err {
                o.check(
                    "curve_filled",
                    false,
                    format!("at {} connections: {e}", held.len()),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            curve.push(point(held.len(), idle_kib, server.pid));
        }
        let an = anomalies(&refs(&held));
        check_anomalies(&mut o, &an, false);
        drop(held);
        drop(cluster);
    }
    o.set("idle_rss_mib", round(idle_kib as f64 / 1024.0, 2));
    o.set("curve", &curve);
    // Let the first server's sockets go before counting descriptors again.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // ---- server 2: a burst, then steps to the ceiling -----------------------------------
    let cluster = Cluster::start(c.launch.clone(), 1, false).await?;
    let server = &cluster.servers[0];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle2 = crate::sys::sample(server.pid)?.rss_kib;
    let signal = Arc::new(Signal::default());
    let drops0 = crate::sys::listen_drops();
    let burst = a.burst.min(max);
    let (mut held, open, joined, mut failure) = grow(server, &signal, 0, burst, a).await;
    let drops = crate::sys::listen_drops() - drops0;
    o.set("burst", burst);
    o.set("burst_open_secs", round(open.as_secs_f64(), 3));
    o.set("burst_joined_secs", round(joined.as_secs_f64(), 3));
    o.set(
        "burst_connects_per_sec",
        round(held.len() as f64 / open.as_secs_f64().max(1e-9), 1),
    );
    o.set("burst_listen_drops", drops);
    let mut ramp = vec![point(held.len(), idle2, server.pid)];
    while failure.is_none() && held.len() < max {
        let n = step.min(max - held.len());
        let (more, _, _, err) = grow(server, &signal, held.len(), n, a).await;
        held.extend(more);
        failure = err;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ramp.push(point(held.len(), idle2, server.pid));
    }
    let all = refs(&held);
    let live = all.iter().filter(|c| !c.snapshot().closed).count();
    let server_sample = crate::sys::sample(server.pid).unwrap_or_default();
    o.set("reached", live);
    o.set("first_failure", &failure);
    o.set("server_fds", server_sample.fds);
    o.set(
        "bench_fds",
        crate::sys::sample(std::process::id())
            .map(|s| s.fds)
            .unwrap_or(0),
    );
    o.set("ramp", &ramp);
    o.check(
        "connections_stay_open",
        live == all.len(),
        format!(
            "{live} of {} opened connections still open at the end",
            all.len()
        ),
    );
    let an = anomalies(&all);
    check_anomalies(&mut o, &an, false);
    o.set("anomalies", an);

    let at_10k = curve
        .iter()
        .chain(ramp.iter())
        .filter(|p| p.conns >= 10_000.min(a.curve_max))
        .map(|p| p.kib_per_conn)
        .next();
    o.target(
        "capacity_connections",
        &format!("concurrent idle connections on one instance (open-file hard limit {hard})"),
        Some(live as f64),
        (">=", 19_000.0),
        "",
        None,
    );
    o.target(
        "open_10k_secs",
        &format!("time to open {burst} connections at once"),
        Some(open.as_secs_f64()),
        ("<=", 3.0),
        "s",
        Some("5,000 took 19 s"),
    );
    o.target(
        "rss_per_conn_kib",
        &format!(
            "RSS per idle connection at {} connections",
            a.curve_max.min(10_000)
        ),
        at_10k,
        ("<=", 8.0),
        "KiB",
        Some("about 18 KiB"),
    );
    o.target(
        "idle_rss_mib",
        "RSS of an idle server",
        Some(idle_kib as f64 / 1024.0),
        ("<", 15.0),
        "MiB",
        Some("68 MiB"),
    );
    c.write_data(&json!({ "curve": curve, "ramp": ramp }))?;
    drop(all);
    drop(held);
    drop(cluster);
    Ok(o)
}

//! `soak`: N idle connections over R rooms for S seconds. Nothing changes, so the cost
//! of presence at rest shows alone: RSS per connection, CPU, bytes per connection per
//! second, Redis commands per second.

use super::*;
use crate::client::{wait_keyed, Signal};
use crate::report::Outcome;
use crate::stats::round;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    #[arg(long)]
    pub redis: bool,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub proto: u8,
    /// The server's HEARTBEAT_MS (passed to it), the unit of the Redis figures.
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

pub async fn run(c: &Common, a: &SoakArgs) -> Result<Outcome> {
    let params = json!({
        "conns": a.conns, "rooms": a.rooms, "seconds": a.seconds, "instances": a.instances,
        "redis": a.redis, "proto": a.proto, "heartbeat_ms": a.heartbeat_ms,
    });
    let mut o = Outcome::new("soak", params);
    let mut launch = c.launch.clone();
    launch
        .env
        .insert(0, ("HEARTBEAT_MS".into(), a.heartbeat_ms.to_string()));
    let cluster = Cluster::start(launch, a.instances, a.redis || a.instances > 1).await?;
    let signal = Arc::new(Signal::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = sample_all(&cluster);

    let specs: Vec<Spec> = (0..a.conns)
        .map(|n| spec(&cluster, "k", n % a.rooms, n / a.rooms, n, a.proto, None))
        .collect();
    let (clients, open, err) = open_and_join(specs, &signal, a.concurrency).await;
    if let Some((ok, e)) = err {
        anyhow::bail!("only {ok} of {} connections opened: {e:#}", a.conns);
    }
    o.set("open_secs", round(open.as_secs_f64(), 3));
    let all = refs(&clients);
    let keys = expected(a.rooms, &all);
    let want: Vec<SetKey> = all.iter().map(|c| keys[c.room]).collect();
    let stamps = wait_keyed(&all, &signal, &want, Duration::from_secs(120)).await;
    let joined = stamps.iter().filter(|s| s.is_some()).count();
    o.check(
        "rosters_exact_before",
        joined == all.len(),
        format!(
            "{joined} of {} clients hold the exact roster before the soak",
            all.len()
        ),
    );
    // Let throttled broadcasts drain before the quiet window starts.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = sample_all(&cluster);
    let bytes0 = client::total(&all, |s| s.bytes);
    let frames0 = client::total(&all, |s| s.frames);
    let pings0 = client::total(&all, |s| s.pings);
    let wire0: Vec<u64> = (0..cluster.servers.len())
        .map(|i| {
            client::wire_total(
                &all.iter()
                    .copied()
                    .filter(|c| c.instance == i)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let watch = RedisWatch::start(&cluster, true).await?;
    let t = Instant::now();
    let mut peak = vec![0u64; cluster.servers.len()];
    for _ in 0..a.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (p, s) in peak.iter_mut().zip(sample_all(&cluster)) {
            *p = (*p).max(s.rss_kib);
        }
    }
    let wall = t.elapsed();
    let after = sample_all(&cluster);
    let redis = match watch {
        Some(w) => Some(w.finish(&cluster).await?),
        None => None,
    };
    let secs = wall.as_secs_f64();
    let n = all.len() as f64;
    let bytes = client::total(&all, |s| s.bytes) - bytes0;
    let frames = client::total(&all, |s| s.frames) - frames0;
    let pings = client::total(&all, |s| s.pings) - pings0;
    let exact = all.iter().filter(|c| c.set() == Some(keys[c.room])).count();
    o.check(
        "rosters_exact_after",
        exact == all.len(),
        format!(
            "{exact} of {} clients hold the exact roster after the soak",
            all.len()
        ),
    );

    let per_instance: Vec<Value> = cluster
        .servers
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let conns = all.iter().filter(|c| c.instance == i).count().max(1) as f64;
            json!({
                "conns": conns,
                "idle_rss_mib": round(idle[i].rss_kib as f64 / 1024.0, 2),
                "rss_mib": round(after[i].rss_kib as f64 / 1024.0, 2),
                "peak_rss_mib": round(peak[i] as f64 / 1024.0, 2),
                "rss_per_conn_kib": round(after[i].rss_kib.saturating_sub(idle[i].rss_kib) as f64 / conns, 3),
                "cpu_percent": round(crate::sys::cpu_percent(&before[i], &after[i], wall), 3),
                "wire_bytes_per_conn_per_sec": round(
                    (client::wire_total(&all.iter().copied().filter(|c| c.instance == i).collect::<Vec<_>>()) - wire0[i]) as f64 / conns / secs,
                    3,
                ),
                "threads": after[i].threads,
                "fds": after[i].fds,
            })
        })
        .collect();
    o.set("per_instance", &per_instance);
    o.set(
        "presence_bytes_per_conn_per_sec",
        round(bytes as f64 / n / secs, 4),
    );
    o.set("presence_frames", frames);
    o.set(
        "pings_per_conn_per_min",
        round(pings as f64 / n / secs * 60.0, 3),
    );
    let intervals = secs * 1000.0 / a.heartbeat_ms as f64;
    let mut per_room_interval = None;
    let mut trips_per_instance_interval = None;
    if let Some(rp) = &redis {
        o.set("redis_per_second", rp.json_per(secs, "second"));
        let per_inst: Vec<Value> = rp
            .per_instance
            .iter()
            .map(|m| {
                json!({
                    "commands_per_interval": round(m.client_commands() as f64 / intervals, 3),
                    "round_trips_per_interval_est": round(m.client_batches() as f64 / intervals, 3),
                    "by_command": m.client_by_command(),
                })
            })
            .collect();
        o.set("redis_per_instance_per_heartbeat", per_inst);
        let trips = rp
            .per_instance
            .iter()
            .map(|m| m.client_batches() as f64 / intervals)
            .fold(0.0, f64::max);
        trips_per_instance_interval = Some(trips);
        // Rooms held per instance: every room spans every instance here.
        let sent = rp.sent().unwrap_or(0) as f64;
        per_room_interval = Some(sent / cluster.servers.len() as f64 / a.rooms as f64 / intervals);
        o.set(
            "redis_calls_per_room_per_interval",
            per_room_interval.map(|v| round(v, 4)),
        );
    }
    let an = anomalies(&all);
    check_anomalies(&mut o, &an, false);
    o.set("anomalies", an);

    o.target(
        "idle_presence_bytes",
        &format!(
            "idle presence bytes per connection per second ({} conns, pings aside)",
            a.conns
        ),
        Some(bytes as f64 / n / secs),
        ("<=", 0.0),
        "B/s",
        Some("200-370 B/s"),
    );
    if redis.is_some() {
        o.target(
            "redis_round_trips_per_heartbeat",
            "Redis round trips per instance per heartbeat interval (estimated from MONITOR)",
            trips_per_instance_interval,
            ("<=", 1.0),
            "",
            None,
        );
        o.target(
            "redis_calls_per_room_per_heartbeat",
            "Redis calls per held room per heartbeat interval",
            per_room_interval,
            ("<=", 1.0),
            "",
            Some("3 commands per room per 5 s"),
        );
    }
    let point = (
        all.len(),
        per_instance
            .first()
            .and_then(|v| v["rss_per_conn_kib"].as_f64())
            .unwrap_or(0.0),
    );
    c.write_data(&json!({ "soak_point": point, "instances": a.instances }))?;
    drop(all);
    drop(clients);
    Ok(o)
}

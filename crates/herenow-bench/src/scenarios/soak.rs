//! `soak`: N idle connections over R rooms for S seconds. Nothing changes, so the cost
//! of presence at rest shows alone: RSS per connection, CPU, bytes per connection per
//! second, Redis commands per second.
//!
//! Redis traffic at rest is two things, reported apart: the room heartbeat (calls on
//! room keys, `<prefix>:{room}:...`, judged by the targets: one exchange per instance
//! and at most one call per held room per heartbeat interval) and the instance's own
//! liveness (lease renewal and connection probe every REAP_MS, whatever it holds),
//! reported per REAP_MS with what it buys. `MONITOR` gives each call's keys; the kernel's
//! segment counts give each instance's writes, i.e. its round trips.

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
    // Each instance's writes to Redis, from the kernel: `MONITOR` cannot tell a
    // pipeline from back-to-back round trips on loopback.
    let redis_port = cluster.redis.as_ref().map(|r| r.port);
    let instance_ports: Vec<Vec<u16>> = cluster
        .redis_client_addrs()
        .iter()
        .map(|addrs| {
            addrs
                .iter()
                .filter_map(|a| a.rsplit(':').next()?.parse().ok())
                .collect()
        })
        .collect();
    let segs0 = redis_port.map(crate::sys::data_segs_in).unwrap_or_default();
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
    let segs1 = redis_port.map(crate::sys::data_segs_in).unwrap_or_default();
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
    // The instance's liveness settings, as the server will have them (the bench's
    // `--env` wins over the defaults).
    let setting = |key: &str, default: u64| -> u64 {
        c.launch
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    };
    let (reap_ms, lease_ms) = (setting("REAP_MS", 2000), setting("LEASE_MS", 6000));
    let hb_secs = a.heartbeat_ms as f64 / 1000.0;
    let mut room_trips: Option<f64> = None;
    let mut room_calls: Option<f64> = None;
    let mut live_trips: Option<f64> = None;
    let mut live_calls: Option<f64> = None;
    if let Some(rp) = &redis {
        o.set("redis_per_second", rp.json_per(secs, "second"));
        let mut per_inst = Vec::new();
        for (i, m) in rp.per_instance.iter().enumerate() {
            let held = all
                .iter()
                .filter(|c| c.instance == i)
                .map(|c| c.room)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                .max(1) as f64;
            // Per heartbeat interval covered by the room exchanges, per REAP_MS covered
            // by the liveness ones (see `MonitorStats::room_intervals`).
            let hb = m.room_intervals(hb_secs);
            let reaps = m.liveness_intervals(reap_ms as f64 / 1000.0);
            let trips = hb.map(|n| m.room_batches() as f64 / n);
            let calls = hb.map(|n| m.room_calls() as f64 / held / n);
            let live = reaps.map(|n| m.liveness_batches() as f64 / n);
            let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
            room_trips = max(room_trips, trips);
            room_calls = max(room_calls, calls);
            live_trips = max(live_trips, live);
            live_calls = max(live_calls, reaps.map(|n| m.liveness_calls() as f64 / n));
            let ports = instance_ports.get(i).map(Vec::as_slice).unwrap_or_default();
            let segs: Option<u64> = if ports.is_empty() {
                None
            } else {
                ports
                    .iter()
                    .map(|p| Some(segs1.get(p)?.saturating_sub(*segs0.get(p)?)))
                    .sum()
            };
            per_inst.push(json!({
                "rooms_held": held,
                "tcp_writes_per_heartbeat": segs.map(|n| round(n as f64 / (secs / hb_secs), 3)),
                "heartbeats_seen": hb,
                "room_exchanges_per_heartbeat": trips.map(|v| round(v, 3)),
                "room_calls_per_room_per_heartbeat": calls.map(|v| round(v, 4)),
                "liveness_exchanges_per_reap": live.map(|v| round(v, 3)),
                "liveness_calls_per_reap": reaps.map(|n| round(m.liveness_calls() as f64 / n, 3)),
                "exchanges_all": m.client_batches(),
                "commands_by_name": m.client_by_command(),
            }));
        }
        // The kernel's count of each instance's writes to Redis, on the report's rows.
        o.set(
            "redis_tcp_writes_per_heartbeat",
            per_inst
                .iter()
                .map(|v| v["tcp_writes_per_heartbeat"].clone())
                .collect::<Vec<_>>(),
        );
        o.set("redis_per_instance", per_inst);
        o.set(
            "redis_liveness",
            json!({
                "exchanges_per_reap_per_instance": live_trips.map(|v| round(v, 3)),
                "calls_per_reap_per_instance": live_calls.map(|v| round(v, 3)),
                "reap_ms": reap_ms,
                "lease_ms": lease_ms,
                "note": format!(
                    "Besides its room heartbeat, each instance renews its lease (a script on \
                     the lease set, no room key) and probes its connection (CLIENT ID) every \
                     REAP_MS ({reap_ms} ms) whatever rooms it holds: that buys detection of a \
                     crashed instance within LEASE_MS + REAP_MS ({} ms). It is counted apart \
                     from the room figures. tcp_writes_per_heartbeat (the kernel's count of \
                     the instance's writes to Redis) shows whether lease and probe share a \
                     round trip: 1 + {:.1} per heartbeat when they do, 1 + {:.1} when not.",
                    lease_ms + reap_ms,
                    a.heartbeat_ms as f64 / reap_ms as f64,
                    2.0 * a.heartbeat_ms as f64 / reap_ms as f64,
                ),
            }),
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
            "Redis exchanges carrying room touches (bursts of room-key calls), per instance \
             per heartbeat interval; lease and probe counted apart",
            room_trips,
            ("<=", 1.0),
            "",
            None,
        );
        o.target(
            "redis_calls_per_room_per_heartbeat",
            "Redis calls on room keys per held room per heartbeat interval",
            room_calls,
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

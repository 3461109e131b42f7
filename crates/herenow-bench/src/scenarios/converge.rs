//! `converge`: clients join one after another (each once the previous join has
//! converged, and with `--pace-ms` no sooner than its slot: joins at a steady rate, as
//! when a meeting starts), then leave: a few abnormally (the grace window applies), the
//! rest with close 1000. Latency of a join or leave = from the hello or the close until
//! every other client of the room holds the new roster.

use super::*;
use crate::client::{wait_keyed, Client, Signal};
use crate::report::Outcome;
use crate::stats::{round, Dist};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ConvergeArgs {
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Clients per room.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    #[arg(long, default_value_t = 2)]
    pub instances: usize,
    /// Use a Redis store (required for more than one instance).
    #[arg(long)]
    pub redis: bool,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub proto: u8,
    /// Clients that leave abnormally (no close frame), to time the grace window.
    #[arg(long, default_value_t = 10)]
    pub grace_leaves: usize,
    /// The server's GRACE_MS, passed to it and used to bound the wait.
    #[arg(long, default_value_t = 3000)]
    pub grace_ms: u64,
    /// Leave Redis `MONITOR` off (no split between the commands an instance sends and
    /// the ones its scripts run; measures what the monitor itself costs).
    #[arg(long)]
    pub no_monitor: bool,
    /// Give up on one join or leave after this long.
    #[arg(long, default_value_t = 10_000)]
    pub step_timeout_ms: u64,
    /// Send the n-th hello no sooner than n x this after the first (0: back to back).
    #[arg(long, default_value_t = 0)]
    pub pace_ms: u64,
}

/// Consecutive timed-out steps after which a phase stops (the server is not converging).
const MAX_FAILED_STEPS: usize = 3;

pub async fn run(c: &Common, a: &ConvergeArgs) -> Result<Outcome> {
    let params = json!({
        "rooms": a.rooms, "clients_per_room": a.clients, "instances": a.instances,
        "redis": a.redis, "proto": a.proto, "grace_leaves": a.grace_leaves, "grace_ms": a.grace_ms,
        "redis_monitor": !a.no_monitor, "pace_ms": a.pace_ms,
    });
    let mut o = Outcome::new("converge", params);
    let mut launch = c.launch.clone();
    launch
        .env
        .insert(0, ("GRACE_MS".into(), a.grace_ms.to_string()));
    let cluster = Cluster::start(launch, a.instances, a.redis || a.instances > 1).await?;
    let signal = Arc::new(Signal::default());
    let step = Duration::from_millis(a.step_timeout_ms);
    let prefix = "c";

    // ---- joins, one after another, round-robin over rooms -----------------------------
    let mut rooms: Vec<Vec<Client>> = (0..a.rooms).map(|_| Vec::new()).collect();
    let mut keys = vec![SetKey::default(); a.rooms];
    let mut join_ms = Vec::new();
    let mut self_ms = Vec::new();
    let mut receiver_joins = 0u64;
    let mut last_join_bytes = Vec::new();
    let mut failed = 0usize;
    let mut consecutive = 0usize;
    let redis_join = RedisWatch::start(&cluster, !a.no_monitor).await?;
    let merged0 = cluster.metric("herenow_broadcasts_merged_total").await;
    let phase = Instant::now();
    'joins: for k in 0..a.clients {
        for r in 0..a.rooms {
            let n = k * a.rooms + r;
            let client = Client::connect(
                spec(&cluster, prefix, r, k, n, a.proto, None),
                signal.clone(),
            )
            .await?;
            let before: u64 = rooms[r].iter().map(|c| c.snapshot().bytes).sum();
            keys[r].add(&client.id);
            if a.pace_ms > 0 {
                let slot = phase + Duration::from_millis(a.pace_ms * n as u64);
                tokio::time::sleep_until(slot.into()).await;
            }
            let t0 = client.hello();
            let mut watch: Vec<&Client> = rooms[r].iter().collect();
            watch.push(&client);
            let want = vec![keys[r]; watch.len()];
            let stamps = wait_keyed(&watch, &signal, &want, step).await;
            if stamps.iter().any(Option::is_none) {
                failed += 1;
                consecutive += 1;
            } else {
                consecutive = 0;
                let (own, others) = stamps.split_last().expect("joiner is last");
                self_ms.push(since_ms(t0, own.unwrap()));
                if let Some(m) = others.iter().flatten().max() {
                    join_ms.push(since_ms(t0, *m));
                }
            }
            receiver_joins += rooms[r].len() as u64;
            if k + 1 == a.clients && !rooms[r].is_empty() {
                let after: u64 = rooms[r].iter().map(|c| c.snapshot().bytes).sum();
                last_join_bytes.push((after - before) as f64 / rooms[r].len() as f64);
            }
            rooms[r].push(client);
            if consecutive >= MAX_FAILED_STEPS {
                break 'joins;
            }
        }
    }
    let join_phase = phase.elapsed();
    // Broadcasts that waited for the end of a fan-out interval (the budget ran out).
    let merged = cluster.metric("herenow_broadcasts_merged_total").await - merged0;
    o.set("merged_broadcasts_in_joins", merged);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Vec<&Client> = rooms.iter().flatten().collect();
    let joins = all.len() as u64;
    let bytes: u64 = all.iter().map(|c| c.snapshot().bytes).sum();
    let own_bytes: u64 = all.iter().map(|c| c.snapshot().first_bytes).sum();
    let frames: u64 = all.iter().map(|c| c.snapshot().frames).sum();
    let exact = all.iter().filter(|c| c.set() == Some(keys[c.room])).count();
    let redis_joins = match redis_join {
        Some(w) => Some(w.finish(&cluster).await?),
        None => None,
    };
    o.check(
        "joins_converged",
        failed == 0 && joins == (a.rooms * a.clients) as u64,
        format!(
            "{} of {} joins converged within {step:?}",
            joins as usize - failed,
            a.rooms * a.clients
        ),
    );
    o.check(
        "rosters_exact_after_joins",
        exact == all.len(),
        format!(
            "{exact} of {} clients hold their room's exact roster",
            all.len()
        ),
    );
    let per_receiver_bytes = (bytes - own_bytes) as f64 / receiver_joins.max(1) as f64;
    let per_receiver_frames = (frames - joins) as f64 / receiver_joins.max(1) as f64;
    let join_dist = Dist::from_ms(&join_ms);
    o.set("join_ms", join_dist);
    o.set("join_self_snapshot_ms", Dist::from_ms(&self_ms));
    o.set("join_phase_secs", round(join_phase.as_secs_f64(), 3));
    o.set("bytes_per_receiver_per_join", round(per_receiver_bytes, 1));
    o.set(
        "frames_per_receiver_per_join",
        round(per_receiver_frames, 3),
    );
    let full_room_bytes = (!last_join_bytes.is_empty())
        .then(|| last_join_bytes.iter().sum::<f64>() / last_join_bytes.len() as f64);
    o.set(
        "bytes_per_receiver_last_join",
        full_room_bytes.map(|b| round(b, 1)),
    );
    o.set(
        "own_snapshot_bytes_per_join",
        round(own_bytes as f64 / joins.max(1) as f64, 1),
    );
    if let Some(rp) = &redis_joins {
        o.set("redis_per_join", rp.json_per(joins as f64, "join"));
    }

    // ---- abnormal leaves: the grace window applies; one room at a time in parallel ----
    let mut grace_ms = Vec::new();
    let mut gone: Vec<Client> = Vec::new();
    let mut grace_failed = 0;
    let mut left = 0;
    while left < a.grace_leaves {
        let mut t0s = Vec::new();
        for r in 0..a.rooms {
            if left >= a.grace_leaves || rooms[r].len() < 2 {
                continue;
            }
            let victim = rooms[r].remove(0);
            keys[r].remove(&victim.id);
            t0s.push((r, Instant::now()));
            victim.abort();
            gone.push(victim);
            left += 1;
        }
        if t0s.is_empty() {
            break;
        }
        let watch: Vec<&Client> = t0s.iter().flat_map(|(r, _)| rooms[*r].iter()).collect();
        let want: Vec<SetKey> = watch.iter().map(|c| keys[c.room]).collect();
        let limit = Duration::from_millis(a.grace_ms) + step;
        let stamps = wait_keyed(&watch, &signal, &want, limit).await;
        for (r, t0) in &t0s {
            let mine: Vec<Option<Instant>> = watch
                .iter()
                .zip(&stamps)
                .filter(|(c, _)| c.room == *r)
                .map(|(_, s)| *s)
                .collect();
            if mine.iter().any(Option::is_none) {
                grace_failed += 1;
            } else if let Some(m) = mine.iter().flatten().max() {
                grace_ms.push(since_ms(*t0, *m));
            }
        }
        if grace_failed >= MAX_FAILED_STEPS {
            break;
        }
    }
    o.check(
        "abnormal_leaves_converged",
        grace_failed == 0,
        format!("{grace_failed} abnormal leaves not seen within grace + {step:?}"),
    );
    o.set("leave_with_grace_ms", Dist::from_ms(&grace_ms));

    // ---- clean leaves (close 1000), one after another, round-robin over rooms --------
    let redis_leave = RedisWatch::start(&cluster, !a.no_monitor).await?;
    let mut leave_ms = Vec::new();
    let mut leave_failed = 0;
    let mut leaves = 0u64;
    consecutive = 0;
    'leaves: loop {
        let mut any = false;
        for r in 0..a.rooms {
            if rooms[r].is_empty() {
                continue;
            }
            any = true;
            let leaver = rooms[r].remove(0);
            keys[r].remove(&leaver.id);
            let t0 = Instant::now();
            leaver.close();
            leaves += 1;
            gone.push(leaver);
            if rooms[r].is_empty() {
                continue;
            }
            let watch: Vec<&Client> = rooms[r].iter().collect();
            let want = vec![keys[r]; watch.len()];
            let stamps = wait_keyed(&watch, &signal, &want, step).await;
            if stamps.iter().any(Option::is_none) {
                leave_failed += 1;
                consecutive += 1;
                if consecutive >= MAX_FAILED_STEPS {
                    break 'leaves;
                }
            } else {
                consecutive = 0;
                leave_ms.push(since_ms(
                    t0,
                    stamps.iter().flatten().max().copied().unwrap(),
                ));
            }
        }
        if !any {
            break;
        }
    }
    let redis_leaves = match redis_leave {
        Some(w) => Some(w.finish(&cluster).await?),
        None => None,
    };
    o.check(
        "clean_leaves_converged",
        leave_failed == 0,
        format!("{leave_failed} clean leaves not seen within {step:?}"),
    );
    o.set("leave_ms", Dist::from_ms(&leave_ms));
    if let Some(rp) = &redis_leaves {
        o.set("redis_per_leave", rp.json_per(leaves as f64, "leave"));
    }
    let everyone: Vec<&Client> = gone.iter().chain(rooms.iter().flatten()).collect();
    let anomalies = anomalies(&everyone);
    check_anomalies(&mut o, &anomalies, false);
    o.set("anomalies", anomalies);

    // ---- targets --------------------------------------------------------------------
    let multi = a.instances > 1;
    let setup = format!(
        "{} instance(s){}, protocol {}",
        a.instances,
        if multi || a.redis { " + Redis" } else { "" },
        a.proto
    );
    let what = if a.pace_ms > 0 {
        format!(
            "paced join convergence p99, {:.0} joins/s into {} room(s) of {}, {setup}",
            1000.0 / a.pace_ms as f64,
            a.rooms,
            a.clients,
        )
    } else {
        format!(
            "serial join convergence p99, {} rooms x {} clients, {setup}",
            a.rooms, a.clients,
        )
    };
    o.target(
        "join_p99_ms",
        &what,
        join_dist.map(|d| d.p99),
        ("<=", 3.0),
        "ms",
        // Side by side on this machine, 2026-12-02 (issue 8): the reference template's
        // own server, serial joins, 10 rooms x 50 and x 100.
        (a.pace_ms == 0).then_some("5.4-7.1 ms"),
    );
    if a.proto == 2 {
        o.target(
            "bytes_per_receiver_per_join_p2",
            &format!(
                "bytes per receiver per join, protocol 2, {}-member room (last join)",
                a.clients
            ),
            full_room_bytes,
            ("<=", 300.0),
            "B",
            None,
        );
    }
    c.write_data(&json!({ "join_ms": join_ms, "leave_ms": leave_ms, "grace_ms": grace_ms }))?;
    drop(everyone);
    drop(gone);
    drop(rooms);
    drop(cluster);
    Ok(o)
}

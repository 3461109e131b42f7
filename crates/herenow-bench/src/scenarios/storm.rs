//! `storm`: every client sends its hello at once, then every client leaves at once. How
//! long until every roster is exact, how many bytes the server sent for it, and how much
//! CPU it burnt.

use super::*;
use crate::client::{wait_keyed, wait_until, Client, Signal};
use crate::report::Outcome;
use crate::stats::{ms, round};
use crate::wire;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Clients per room.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    #[arg(long)]
    pub redis: bool,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub proto: u8,
    /// Handshakes in flight while connecting (before the storm; not timed).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

pub async fn run(c: &Common, a: &StormArgs) -> Result<Outcome> {
    let params = json!({
        "rooms": a.rooms, "clients_per_room": a.clients, "instances": a.instances,
        "redis": a.redis, "proto": a.proto,
    });
    let mut o = Outcome::new("storm", params);
    let cluster = Cluster::start(c.launch.clone(), a.instances, a.redis || a.instances > 1).await?;
    let signal = Arc::new(Signal::default());
    let timeout = Duration::from_secs(a.timeout_secs);
    let prefix = "s";

    let specs: Vec<Spec> = (0..a.rooms * a.clients)
        .map(|n| spec(&cluster, prefix, n % a.rooms, n / a.rooms, n, a.proto, None))
        .collect();
    let t = Instant::now();
    let (clients, err) = client::connect_all(specs, signal.clone(), a.concurrency).await;
    if let Some((ok, e)) = err {
        anyhow::bail!(
            "only {ok} of {} clients connected: {e:#}",
            a.rooms * a.clients
        );
    }
    o.set("connect_secs", round(t.elapsed().as_secs_f64(), 3));
    let all = refs(&clients);
    let keys = expected(a.rooms, &all);
    let want: Vec<SetKey> = all.iter().map(|c| keys[c.room]).collect();

    // ---- join storm -----------------------------------------------------------------
    let before = sample_all(&cluster);
    let wire0 = client::wire_total(&all);
    let redis_join = RedisWatch::start(&cluster, false).await?;
    let merged0 = cluster.metric("herenow_broadcasts_merged_total").await;
    let t0 = Instant::now();
    for c in &all {
        c.hello();
    }
    let stamps = wait_keyed(&all, &signal, &want, timeout).await;
    let exact_at = Instant::now();
    let after = sample_all(&cluster);
    let done = stamps.iter().filter(|s| s.is_some()).count();
    let join_ms = stamps.iter().flatten().max().map(|m| since_ms(t0, *m));
    let bytes_at_exact = client::total(&all, |s| s.bytes);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bytes = client::total(&all, |s| s.bytes);
    o.set(
        "merged_broadcasts",
        cluster.metric("herenow_broadcasts_merged_total").await - merged0,
    );
    let frames = client::total(&all, |s| s.frames);
    let wire_bytes = client::wire_total(&all) - wire0;
    let cpu = cpu_used(&before, &after);
    let redis_joins = match redis_join {
        Some(w) => Some(w.finish(&cluster).await?),
        None => None,
    };
    o.check(
        "join_rosters_exact",
        done == all.len(),
        format!(
            "{done} of {} clients reached their exact roster within {timeout:?}",
            all.len()
        ),
    );
    o.set("join_exact_ms", join_ms.map(|v| round(v, 3)));
    o.set("join_bytes_sent", bytes);
    o.set("join_bytes_at_exact", bytes_at_exact);
    o.set("join_wire_bytes", wire_bytes);
    o.set("join_frames", frames);
    o.set("join_server_cpu_secs", round(cpu, 3));
    o.set("join_wait_secs", round(ms(exact_at - t0) / 1000.0, 3));
    if let Some(rp) = &redis_joins {
        o.set("redis_join", rp.json_per(all.len() as f64, "join"));
    }

    // What the final rosters themselves weigh: protocol 1 clients hold it as their last
    // presence; protocol 2 clients ask one snapshot per room.
    let final_bytes: u64 = if a.proto == 1 {
        client::total(&all, |s| s.last_snapshot_bytes)
    } else {
        let mut total = 0;
        for r in 0..a.rooms {
            let Some(first) = all.iter().find(|c| c.room == r) else {
                continue;
            };
            let had = first.snapshot().snapshots;
            first.send(wire::SYNC.into());
            let got = wait_until(&[*first], &signal, Duration::from_secs(5), |_, s| {
                (s.snapshots > had).then(Instant::now)
            })
            .await;
            if got[0].is_some() {
                let size = first.snapshot().last_snapshot_bytes;
                total += size * all.iter().filter(|c| c.room == r).count() as u64;
            }
        }
        total
    };
    let ratio = (final_bytes > 0).then(|| bytes as f64 / final_bytes as f64);
    o.set("final_roster_bytes", final_bytes);
    o.set("bytes_over_final_rosters", ratio.map(|r| round(r, 3)));

    // ---- leave storm, watched by one probe per room that joined afterwards -------------
    let probe_specs: Vec<Spec> = (0..a.rooms)
        .map(|r| spec(&cluster, "p", r, r, all.len() + r, a.proto, None))
        .map(|mut s| {
            s.room_name = room_name(prefix, s.room);
            s
        })
        .collect();
    let (probes, _, err) = open_and_join(probe_specs, &signal, a.concurrency).await;
    if let Some((_, e)) = err {
        anyhow::bail!("probe connect failed: {e:#}");
    }
    let probe_refs = refs(&probes);
    let mut with_probe = keys.clone();
    for p in &probes {
        with_probe[p.room].add(&p.id);
    }
    let want: Vec<SetKey> = probe_refs.iter().map(|p| with_probe[p.room]).collect();
    let seen = wait_keyed(&probe_refs, &signal, &want, timeout).await;
    o.check(
        "probes_joined",
        seen.iter().all(Option::is_some),
        "one probe per room sees the full room",
    );
    let probe_bytes_before = client::total(&probe_refs, |s| s.bytes);
    let wire0 = client::wire_total(&probe_refs);
    let before = sample_all(&cluster);
    let t0 = Instant::now();
    for c in &all {
        c.close();
    }
    let alone: Vec<SetKey> = probe_refs
        .iter()
        .map(|p| SetKey::of([p.id.as_str()]))
        .collect();
    let stamps = wait_keyed(&probe_refs, &signal, &alone, timeout).await;
    let after = sample_all(&cluster);
    let cpu = cpu_used(&before, &after);
    let wire_bytes = client::wire_total(&probe_refs) - wire0;
    let done = stamps.iter().filter(|s| s.is_some()).count();
    o.check(
        "leave_rosters_exact",
        done == probes.len(),
        format!(
            "{done} of {} probes saw their room empty within {timeout:?}",
            probes.len()
        ),
    );
    o.set(
        "leave_exact_ms",
        stamps
            .iter()
            .flatten()
            .max()
            .map(|m| round(since_ms(t0, *m), 3)),
    );
    o.set("leave_server_cpu_secs", round(cpu, 3));
    o.set("leave_wire_bytes_to_probes", wire_bytes);
    o.set(
        "leave_bytes_per_probe",
        (client::total(&probe_refs, |s| s.bytes) - probe_bytes_before) / probes.len().max(1) as u64,
    );
    let everyone: Vec<&Client> = all
        .iter()
        .copied()
        .chain(probe_refs.iter().copied())
        .collect();
    let an = anomalies(&everyone);
    check_anomalies(&mut o, &an, false);
    o.set("anomalies", an);

    let n = all.len();
    let setup = if a.instances > 1 || a.redis {
        format!("{} instance(s) + Redis", a.instances)
    } else {
        "1 instance".to_string()
    };
    if a.proto == 1 {
        o.target(
            "storm_p1_exact_ms",
            &format!(
                "storm, {n} clients into {} rooms at once, {setup}, protocol 1: every roster exact",
                a.rooms
            ),
            join_ms,
            ("<=", 500.0),
            "ms",
            Some("6.8 s"),
        );
        o.target(
            "storm_p1_bytes_mb",
            &format!("storm, {n} clients, {setup}, protocol 1: presence bytes sent in total"),
            Some(bytes as f64 / 1e6),
            ("<=", 10.0),
            "MB",
            Some("242 MB"),
        );
    } else {
        o.target(
            "storm_p2_bytes_ratio",
            &format!(
                "storm, {n} clients, {setup}, protocol 2: bytes sent / bytes of the final rosters"
            ),
            ratio,
            ("<=", 2.0),
            "x",
            None,
        );
    }
    drop(everyone);
    drop(all);
    drop(probes);
    drop(clients);
    Ok(o)
}

//! `faults`: two failures of a multi-instance deployment.
//!
//! 1. `kill -9` one instance: how long until its members are gone from every roster
//!    held on the surviving instance.
//! 2. Redis stops (killed: it keeps no data) for `--outage-secs` while members come and
//!    go, then starts again, empty: how long after it answers until every roster is exact
//!    again, with no client reconnecting.

use super::*;
use crate::client::{wait_keyed, Client, Signal};
use crate::report::Outcome;
use crate::stats::round;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct FaultsArgs {
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Clients per room (spread over both instances).
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub proto: u8,
    #[arg(long, default_value_t = 10)]
    pub outage_secs: u64,
    /// How long to wait for rosters to recover after each fault.
    #[arg(long, default_value_t = 40)]
    pub recover_timeout_secs: u64,
    #[arg(long)]
    pub skip_kill: bool,
    #[arg(long)]
    pub skip_outage: bool,
}

/// Connects R x C clients over both instances and waits for exact rosters.
async fn fill(
    cluster: &Cluster,
    signal: &Arc<Signal>,
    prefix: &str,
    a: &FaultsArgs,
) -> Result<Vec<Client>> {
    let specs: Vec<Spec> = (0..a.rooms * a.clients)
        .map(|n| spec(cluster, prefix, n % a.rooms, n / a.rooms, n, a.proto, None))
        .collect();
    let (clients, _, err) = open_and_join(specs, signal, 256).await;
    if let Some((ok, e)) = err {
        anyhow::bail!("only {ok} clients connected: {e:#}");
    }
    let all = refs(&clients);
    let keys = expected(a.rooms, &all);
    let want: Vec<SetKey> = all.iter().map(|c| keys[c.room]).collect();
    let got = wait_keyed(&all, signal, &want, Duration::from_secs(30)).await;
    let n = got.iter().filter(|g| g.is_some()).count();
    if n != all.len() {
        anyhow::bail!(
            "only {n} of {} clients reached the exact roster before the fault",
            all.len()
        );
    }
    drop(all);
    Ok(clients)
}

pub async fn run(c: &Common, a: &FaultsArgs) -> Result<Outcome> {
    let params = json!({
        "rooms": a.rooms, "clients_per_room": a.clients, "instances": 2, "proto": a.proto,
        "outage_secs": a.outage_secs,
    });
    let mut o = Outcome::new("faults", params);
    let timeout = Duration::from_secs(a.recover_timeout_secs);

    // ---- 1. kill -9 one instance -------------------------------------------------------
    if !a.skip_kill {
        let mut cluster = Cluster::start(c.launch.clone(), 2, true).await?;
        let signal = Arc::new(Signal::default());
        let clients = fill(&cluster, &signal, "k", a).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        cluster.servers[1].kill9().await;
        let survivors: Vec<&Client> = clients.iter().filter(|c| c.instance == 0).collect();
        let keys = expected(a.rooms, &survivors);
        let want: Vec<SetKey> = survivors.iter().map(|c| keys[c.room]).collect();
        let got = wait_keyed(&survivors, &signal, &want, timeout).await;
        let done = got.iter().filter(|g| g.is_some()).count();
        let gone_ms = got.iter().flatten().max().map(|t| since_ms(t0, *t));
        o.check(
            "killed_members_gone",
            done == survivors.len(),
            format!(
                "{done} of {} surviving clients lost the killed instance's members within {timeout:?}",
                survivors.len()
            ),
        );
        let an = anomalies(&survivors);
        check_anomalies(&mut o, &an, false);
        o.set("kill_gone_ms", gone_ms.map(|v| round(v, 1)));
        o.set("kill_anomalies", an);
        o.target(
            "kill_gone_secs",
            "members of a kill -9'd instance gone from every roster",
            gone_ms.map(|v| v / 1000.0),
            ("<=", 10.0),
            "s",
            Some("30 s"),
        );
        drop(survivors);
        drop(clients);
        drop(cluster);
    }

    // ---- 2. Redis outage -------------------------------------------------------------
    if !a.skip_outage {
        let mut cluster = Cluster::start(c.launch.clone(), 2, true).await?;
        let signal = Arc::new(Signal::default());
        let mut clients = fill(&cluster, &signal, "o", a).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stopped = Instant::now();
        cluster.redis.as_mut().expect("redis").kill().await;
        // While Redis is away: in every room the first member leaves cleanly and a new
        // one joins (on alternating instances).
        tokio::time::sleep(Duration::from_millis((a.outage_secs * 1000 / 4).min(2000))).await;
        let mut gone = Vec::new();
        for r in 0..a.rooms {
            if let Some(i) = clients.iter().position(|c| c.room == r) {
                let c = clients.remove(i);
                c.close();
                gone.push(c);
            }
        }
        let base = a.rooms * a.clients;
        let specs: Vec<Spec> = (0..a.rooms)
            .map(|r| spec(&cluster, "o", r, a.clients + r, base + r, a.proto, None))
            .collect();
        let (newcomers, _, err) = open_and_join(specs, &signal, 64).await;
        o.check(
            "join_during_outage",
            err.is_none(),
            match &err {
                Some((_, e)) => format!("a join during the outage failed: {e:#}"),
                None => format!("{} members joined during the outage", newcomers.len()),
            },
        );
        clients.extend(newcomers);
        let remaining = Duration::from_secs(a.outage_secs).saturating_sub(stopped.elapsed());
        tokio::time::sleep(remaining).await;
        cluster.redis.as_mut().expect("redis").restart().await?;
        let back = Instant::now();
        let outage = back - stopped;
        let all = refs(&clients);
        let keys = expected(a.rooms, &all);
        let want: Vec<SetKey> = all.iter().map(|c| keys[c.room]).collect();
        let got = wait_keyed(&all, &signal, &want, timeout).await;
        let done = got.iter().filter(|g| g.is_some()).count();
        let exact_ms = got.iter().flatten().max().map(|t| since_ms(back, *t));
        // Still exact a second later (nothing flapped back)?
        tokio::time::sleep(Duration::from_secs(1)).await;
        let still = all.iter().filter(|c| c.set() == Some(keys[c.room])).count();
        o.check(
            "rosters_exact_after_outage",
            done == all.len() && still == all.len(),
            format!(
                "{done} of {} clients exact within {timeout:?} of Redis returning, {still} still exact 1 s later",
                all.len()
            ),
        );
        let an = anomalies(&all);
        check_anomalies(&mut o, &an, false);
        o.set("outage_secs_actual", round(outage.as_secs_f64(), 3));
        o.set("outage_exact_ms", exact_ms.map(|v| round(v, 1)));
        o.set("outage_anomalies", an);
        o.target(
            "outage_exact_secs",
            &format!(
                "rosters exact after a {} s Redis outage, from Redis answering again",
                a.outage_secs
            ),
            exact_ms.map(|v| v / 1000.0),
            ("<=", 1.0),
            "s",
            None,
        );
        drop(all);
        drop(gone);
        drop(clients);
        drop(cluster);
    }
    Ok(o)
}

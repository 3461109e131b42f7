//! `fanout`: one room of N members; one member changes its state, again and again; how
//! long until every other member has each change (protocol 2: the `updated` entry).

use super::*;
use crate::client::{wait_keyed, wait_until, Signal};
use crate::report::Outcome;
use crate::stats::{round, Dist};
use crate::wire;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// State changes to time (one at a time).
    #[arg(long, default_value_t = 20)]
    pub changes: u64,
    /// Pause between changes, so each is one broadcast.
    #[arg(long, default_value_t = 200)]
    pub gap_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    #[arg(long)]
    pub redis: bool,
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Give up on the room filling after this long.
    #[arg(long, default_value_t = 300)]
    pub join_timeout_secs: u64,
}

pub async fn run(c: &Common, a: &FanoutArgs) -> Result<Outcome> {
    let params = json!({
        "members": a.members, "changes": a.changes, "instances": a.instances, "redis": a.redis,
        "proto": 2,
    });
    let mut o = Outcome::new("fanout", params);
    let cluster = Cluster::start(c.launch.clone(), a.instances, a.redis || a.instances > 1).await?;
    let signal = Arc::new(Signal::default());
    let changer_id = client_id("f", 0, 0);
    let specs: Vec<Spec> = (0..a.members)
        .map(|k| spec(&cluster, "f", 0, k, k, 2, Some(&changer_id)))
        .collect();
    let t = Instant::now();
    let (clients, open, err) = open_and_join(specs, &signal, a.concurrency).await;
    if let Some((ok, e)) = err {
        anyhow::bail!("only {ok} of {} members connected: {e:#}", a.members);
    }
    let all = refs(&clients);
    let keys = expected(1, &all);
    let want = vec![keys[0]; all.len()];
    let stamps = wait_keyed(
        &all,
        &signal,
        &want,
        Duration::from_secs(a.join_timeout_secs),
    )
    .await;
    let filled = stamps.iter().filter(|s| s.is_some()).count();
    o.set("open_secs", round(open.as_secs_f64(), 3));
    o.set("fill_secs", round(t.elapsed().as_secs_f64(), 3));
    o.set("fill_bytes", client::total(&all, |s| s.bytes));
    o.set("fill_frames", client::total(&all, |s| s.frames));
    o.check(
        "room_filled",
        filled == all.len(),
        format!("{filled} of {} members hold the full roster", all.len()),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (changer, receivers) = all.split_first().expect("at least one member");
    let mut samples = Vec::new();
    let mut per_change_max = Vec::new();
    let mut missed = 0;
    let timeout = Duration::from_secs(30);
    for seq in 1..=a.changes {
        let t0 = Instant::now();
        changer.send(wire::state(seq));
        let stamps = wait_until(receivers, &signal, timeout, |_, s| {
            (s.roster.watch_seq == Some(seq)).then(|| s.watch_at.unwrap_or_else(Instant::now))
        })
        .await;
        let lat: Vec<f64> = stamps.iter().flatten().map(|t| since_ms(t0, *t)).collect();
        missed += stamps.len() - lat.len();
        if let Some(m) = lat.iter().copied().reduce(f64::max) {
            per_change_max.push(m);
        }
        samples.extend(lat);
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    o.check(
        "every_change_reached_everyone",
        missed == 0,
        format!("{missed} (member, change) pairs not delivered within {timeout:?}"),
    );
    let dist = Dist::from_ms(&samples);
    o.set("receive_ms", dist);
    o.set("all_have_it_ms", Dist::from_ms(&per_change_max));
    let an = anomalies(&all);
    check_anomalies(&mut o, &an, false);
    o.set("anomalies", an);
    o.target(
        "fanout_p99_ms",
        &format!(
            "a state change in a {}-member room reaches every member, p99",
            a.members
        ),
        dist.map(|d| d.p99),
        ("<=", 100.0),
        "ms",
        None,
    );
    c.write_data(&json!({ "receive_ms": crate::stats::cdf_points(&samples, 400) }))?;
    drop(all);
    drop(clients);
    Ok(o)
}

//! `fanout`: one room of N members; one member changes its state, again and again; how
//! long until every other member has each change (protocol 2: the `updated` entry).
//!
//! Filling the room is the expensive part. Every joiner's snapshot holds the room so far,
//! so N joins move N^2/2 roster entries (about 3.5 GB of snapshots for 10,000 members,
//! and diffs besides); and every broadcast is a frame to every member, so what a fill
//! costs is mostly how many broadcasts it causes. Two ways to get it wrong:
//! - all at once: the server queues gigabytes faster than one load generator on a
//!   shared machine reads, pings wait behind queued snapshots, sockets go stale;
//! - in waves with pauses between them: after a quiet interval the room's throttle
//!   broadcasts each change at once again, and in a room of thousands the next join is
//!   only processed after that broadcast's frames went out; with a fixed burst (10 per
//!   interval, the server before 4cdd064) joins then never again came 10 to an interval
//!   and each one cost a broadcast to the whole room (N^2/2 frames).
//!
//! So joins go out as a steady stream: sockets are opened ahead (a few dozen, well
//! within the hello timeout) and their hellos leave at `--join-rate` per second from a
//! thread of their own, which keeps the throttle merging (one diff per interval); the
//! stream waits while the snapshots in flight (hellos sent whose snapshot has not
//! arrived, times the current snapshot size) would exceed `--fill-budget-mb`. Every
//! member joins through the protocol and must hold the exact roster before the timing
//! starts; the fill's own figures (time, bytes, what the server did) are reported apart.

use super::*;
use crate::client::{wait_keyed, wait_until, Signal};
use crate::report::Outcome;
use crate::stats::{round, Dist};
use crate::wire;
use clap::Args;
use std::sync::atomic::Ordering;

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
    /// Handshakes in flight while filling (the server answers them late when busy).
    #[arg(long, default_value_t = 192)]
    pub concurrency: usize,
    /// Hellos per second while filling, at most (the server's pace sets it in a big
    /// room: ~100 joins/s near 10,000 members here).
    #[arg(long, default_value_t = 300)]
    pub join_rate: u32,
    /// Snapshot bytes the joiners may have in flight (estimated from the room's size and
    /// the bytes per member of the latest snapshots).
    #[arg(long, default_value_t = 64)]
    pub fill_budget_mb: u64,
    /// Give up on the room filling after this long.
    #[arg(long, default_value_t = 180)]
    pub join_timeout_secs: u64,
}

/// Bytes per member in a snapshot before one has been seen: a protocol-2 user entry plus
/// its id in `members`, with room to spare.
const GUESS_BYTES_PER_MEMBER: f64 = 100.0;

/// Sockets opened ahead of their hello: enough that the stream never waits for a
/// handshake, few enough that none nears the server's hello timeout (10 s).
const OPENED_AHEAD: usize = 32;

/// How the room filled.
#[derive(Default)]
struct Fill {
    clients: Vec<Client>,
    /// Time the stream waited for the snapshots in flight to fit the budget.
    budget_waits: Duration,
    /// Most snapshot bytes estimated in flight.
    peak_in_flight: f64,
    /// From the first hello to the last.
    hello_secs: f64,
}

/// Opens the sockets in order (`concurrency` handshakes at once, `OPENED_AHEAD` waiting
/// at most) and hands them to the pacing thread, which sends the hellos and gives the
/// clients back in order; then waits for every joiner's snapshot. Fails when a socket
/// cannot connect or a joiner gets no snapshot before `deadline`.
async fn fill(
    specs: Vec<Spec>,
    signal: &Arc<Signal>,
    a: &FanoutArgs,
    deadline: Instant,
) -> Result<Fill> {
    use futures_util::StreamExt;
    let n = specs.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<Client>(OPENED_AHEAD);
    let pacer = {
        let (signal, a) = (signal.clone(), a.clone());
        std::thread::spawn(move || pace(rx, &signal, &a, deadline))
    };
    let mut opened = futures_util::stream::iter(specs)
        .map(|spec| {
            let signal = signal.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(20), Client::connect(spec, signal))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("connect timed out after 20 s")))
            }
        })
        .buffered(a.concurrency.max(1));
    let mut connect_err = None;
    while let Some(r) = opened.next().await {
        match r {
            Ok(c) => {
                if tx.send(c).await.is_err() {
                    break; // the pacer stopped at the deadline
                }
            }
            Err(e) => {
                connect_err = Some(e);
                break;
            }
        }
    }
    drop(opened);
    drop(tx);
    let f = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    if let Some(e) = connect_err {
        anyhow::bail!("{} of {n} members connected: {e:#}", f.clients.len());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let got = futures_util::future::join_all(f.clients.iter().map(|c| c.first_roster(left))).await;
    let missing: Vec<ClientState> = f
        .clients
        .iter()
        .zip(&got)
        .filter(|(_, ok)| !**ok)
        .map(|(c, _)| c.snapshot())
        .collect();
    if f.clients.len() < n || !missing.is_empty() {
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        for s in &missing {
            let k = match (s.closed, s.close_code) {
                (false, _) => "still open".to_string(),
                (true, Some(c)) => format!("closed {c}"),
                (true, None) => "closed without a close frame".to_string(),
            };
            *by_state.entry(k).or_default() += 1;
        }
        anyhow::bail!(
            "{} of {n} members said hello within the fill limit; {} got no snapshot \
             ({by_state:?})",
            f.clients.len(),
            missing.len()
        );
    }
    Ok(f)
}

/// The pacing thread: a hello every 1/rate seconds (catching up a little after a delay),
/// held back while the snapshots in flight would exceed the budget. A thread of its own,
/// so the pace does not depend on how busy the runtime is with reading.
fn pace(
    mut rx: tokio::sync::mpsc::Receiver<Client>,
    signal: &Signal,
    a: &FanoutArgs,
    deadline: Instant,
) -> Fill {
    let verbose = std::env::var_os("HERENOW_BENCH_VERBOSE").is_some();
    let budget = (a.fill_budget_mb.max(1) << 20) as f64;
    let step = Duration::from_secs_f64(1.0 / f64::from(a.join_rate.max(1)));
    let mut f = Fill::default();
    let mut per_member = GUESS_BYTES_PER_MEMBER;
    let start = Instant::now();
    let mut next = start;
    while let Some(c) = rx.blocking_recv() {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        // The snapshot size per member, from the latest joiner that has its snapshot.
        if let Some((bytes, count)) = f.clients.iter().rev().take(256).find_map(|c| {
            let s = c.state.lock().unwrap();
            (s.first_count > 0).then_some((s.first_bytes, s.first_count))
        }) {
            per_member = bytes as f64 / f64::from(count);
        }
        let waiting = Instant::now();
        loop {
            let pending = f.clients.len() as f64 - signal.firsts.load(Ordering::Relaxed) as f64;
            let in_flight = (pending + 1.0) * (f.clients.len() + 1) as f64 * per_member;
            if in_flight <= budget || pending < 1.0 || Instant::now() >= deadline {
                f.peak_in_flight = f.peak_in_flight.max(in_flight);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        f.budget_waits += waiting.elapsed();
        c.hello_now();
        f.clients.push(c);
        // After a stall, catch up by at most a few hellos: no burst.
        next = next.max(Instant::now().checked_sub(step * 4).unwrap_or(start)) + step;
        if verbose && f.clients.len() % 1000 == 0 {
            eprintln!(
                "fanout: {} hellos at {:.1} s, {} without snapshot, {per_member:.0} B/member, \
                 {:.1} s waited for the budget",
                f.clients.len(),
                start.elapsed().as_secs_f64(),
                f.clients.len() as u64 - signal.firsts.load(Ordering::Relaxed),
                f.budget_waits.as_secs_f64(),
            );
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    f.hello_secs = start.elapsed().as_secs_f64();
    f
}

pub async fn run(c: &Common, a: &FanoutArgs) -> Result<Outcome> {
    let params = json!({
        "members": a.members, "changes": a.changes, "instances": a.instances, "redis": a.redis,
        "proto": 2, "join_rate": a.join_rate, "fill_budget_mb": a.fill_budget_mb,
    });
    let mut o = Outcome::new("fanout", params);
    let cluster = Cluster::start(c.launch.clone(), a.instances, a.redis || a.instances > 1).await?;
    let signal = Arc::new(Signal::default());
    let changer_id = client_id("f", 0, 0);
    let specs: Vec<Spec> = (0..a.members)
        .map(|k| spec(&cluster, "f", 0, k, k, 2, Some(&changer_id)))
        .collect();
    let idle = sample_all(&cluster);
    let t = Instant::now();
    let deadline = t + Duration::from_secs(a.join_timeout_secs);
    let f = match fill(specs, &signal, a, deadline).await {
        Ok(f) => f,
        Err(e) => {
            // Say what the server did to the joiners (stale or slow closes?).
            o.set("fill_secs", round(t.elapsed().as_secs_f64(), 3));
            o.set("server_after_fill", server_view(&cluster).await);
            o.check("room_filled", false, format!("{e:#}"));
            return Ok(o);
        }
    };
    let clients = f.clients;
    let all = refs(&clients);
    let keys = expected(1, &all);
    let want = vec![keys[0]; all.len()];
    let stamps = wait_keyed(
        &all,
        &signal,
        &want,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await;
    let filled = stamps.iter().filter(|s| s.is_some()).count();
    let fill_secs = t.elapsed().as_secs_f64();
    let after_fill = sample_all(&cluster);
    let bench = crate::sys::sample(std::process::id()).unwrap_or_default();
    let snapshots = client::total(&all, |s| s.snapshots);
    o.set("fill_secs", round(fill_secs, 3));
    o.set("fill_hello_secs", round(f.hello_secs, 3));
    o.set(
        "fill_budget_wait_secs",
        round(f.budget_waits.as_secs_f64(), 3),
    );
    o.set(
        "fill_peak_snapshot_mib_in_flight_est",
        round(f.peak_in_flight / 1048576.0, 1),
    );
    o.set("fill_bytes", client::total(&all, |s| s.bytes));
    o.set("fill_wire_bytes", client::wire_total(&all));
    o.set("fill_frames", client::total(&all, |s| s.frames));
    // Snapshots beyond each member's own: sent by the server instead of a diff to a
    // member whose version is not where the diff starts (it joined inside a throttled
    // span), after an outbound queue overflowed, or to a sync after a version gap.
    let join_snapshot_bytes = client::total(&all, |s| s.first_bytes);
    o.set("fill_join_snapshot_bytes", join_snapshot_bytes);
    o.set(
        "fill_extra_snapshots",
        snapshots.saturating_sub(all.len() as u64),
    );
    o.set(
        "fill_extra_snapshot_bytes",
        client::total(&all, |s| s.snapshot_bytes).saturating_sub(join_snapshot_bytes),
    );
    o.set(
        "fill_server_cpu_secs",
        round(cpu_used(&idle, &after_fill), 2),
    );
    o.set(
        "server_rss_mib",
        json!({
            "idle": round(idle.iter().map(|s| s.rss_kib).sum::<u64>() as f64 / 1024.0, 1),
            "after_fill": round(after_fill.iter().map(|s| s.rss_kib).sum::<u64>() as f64 / 1024.0, 1),
            "hwm": round(after_fill.iter().map(|s| s.hwm_kib).sum::<u64>() as f64 / 1024.0, 1),
        }),
    );
    o.set("bench_rss_mib", round(bench.hwm_kib as f64 / 1024.0, 1));
    o.set("server_after_fill", server_view(&cluster).await);
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
    o.set(
        "server_rss_mib_at_end",
        round(
            sample_all(&cluster).iter().map(|s| s.rss_kib).sum::<u64>() as f64 / 1024.0,
            1,
        ),
    );
    o.set("server_at_end", server_view(&cluster).await);
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

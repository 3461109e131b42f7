//! The scenarios of issue 5, one module each, and what they share: naming rooms and
//! clients, spreading a room's clients over instances, reading the servers' resources and
//! Redis counters around a phase.

pub mod capacity;
pub mod converge;
pub mod fanout;
pub mod faults;
pub mod soak;
pub mod storm;

use crate::client::{self, Client, ClientState, Signal, Spec};
use crate::redis::{self, Counters, Monitor, MonitorStats};
use crate::servers::{Cluster, Launch};
use crate::stats::round;
use crate::sys::{self, ProcSample};
use crate::wire::SetKey;
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every scenario gets from the command line.
#[derive(Debug, Clone)]
pub struct Common {
    pub launch: Launch,
    /// Where to write raw series for the report's plots, if anywhere.
    pub data_out: Option<PathBuf>,
}

impl Common {
    /// Writes the raw series (latency samples, memory points) for the suite's plots.
    pub fn write_data(&self, data: &Value) -> Result<()> {
        if let Some(p) = &self.data_out {
            std::fs::write(p, serde_json::to_vec(data)?)?;
        }
        Ok(())
    }
}

pub fn room_name(prefix: &str, r: usize) -> String {
    format!("{prefix}-{r}")
}

/// The k-th client of room r: ids are short (they travel in every roster) and unique.
pub fn client_id(prefix: &str, r: usize, k: usize) -> String {
    format!("{prefix}{r}x{k}")
}

/// Spec of the k-th client of room r; a room's clients alternate over the instances so
/// every room spans all of them. `n` picks the source address.
pub fn spec(
    cluster: &Cluster,
    prefix: &str,
    r: usize,
    k: usize,
    n: usize,
    proto: u8,
    watch: Option<&str>,
) -> Spec {
    let instance = k % cluster.servers.len();
    Spec {
        server: cluster.servers[instance].addr,
        room_name: room_name(prefix, r),
        room: r,
        instance,
        id: client_id(prefix, r, k),
        proto,
        watch: watch.map(Into::into),
        source: client::source_addr(n),
    }
}

/// Expected member set of each room, from who is in it.
pub fn expected(rooms: usize, members: &[&Client]) -> Vec<SetKey> {
    let mut keys = vec![SetKey::default(); rooms];
    for c in members {
        keys[c.room].add(&c.id);
    }
    keys
}

/// Resources of every instance at one moment.
pub fn sample_all(cluster: &Cluster) -> Vec<ProcSample> {
    cluster
        .servers
        .iter()
        .map(|s| sys::sample(s.pid).unwrap_or_default())
        .collect()
}

/// CPU seconds between two samples, summed over instances.
pub fn cpu_used(before: &[ProcSample], after: &[ProcSample]) -> f64 {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.cpu_secs - b.cpu_secs)
        .sum()
}

/// Redis counters and a `MONITOR` feed around one phase.
pub struct RedisWatch {
    addr: std::net::SocketAddr,
    before: Counters,
    monitor: Option<Monitor>,
}

impl RedisWatch {
    pub async fn start(cluster: &Cluster, with_monitor: bool) -> Result<Option<RedisWatch>> {
        let Some(r) = &cluster.redis else {
            return Ok(None);
        };
        let addr = r.addr();
        let monitor = if with_monitor {
            Some(Monitor::start(addr).await?)
        } else {
            None
        };
        Ok(Some(RedisWatch {
            addr,
            before: redis::counters(addr).await?,
            monitor,
        }))
    }

    /// Stops and reports: commandstats deltas, and (with the monitor) the split between
    /// commands the instances sent and the ones their scripts ran, per instance.
    pub async fn finish(self, cluster: &Cluster) -> Result<RedisPhase> {
        let after = redis::counters(self.addr).await?;
        let processed = after.total.saturating_sub(self.before.total);
        let commands = redis::delta(&self.before.commands, &after.commands);
        let monitor = match self.monitor {
            Some(m) => Some(m.stop().await),
            None => None,
        };
        let per_instance: Vec<MonitorStats> = match &monitor {
            Some(m) => cluster
                .redis_client_addrs()
                .iter()
                .map(|addrs| m.only_clients(addrs))
                .collect(),
            None => Vec::new(),
        };
        Ok(RedisPhase {
            processed,
            commands,
            monitor,
            per_instance,
        })
    }
}

/// What Redis saw during one phase.
#[derive(Debug, Clone)]
pub struct RedisPhase {
    /// `total_commands_processed` delta (script-internal commands included, and the
    /// bench's own `INFO`s).
    pub processed: u64,
    /// `INFO commandstats` deltas: everything, script-internal commands included.
    pub commands: BTreeMap<String, u64>,
    pub monitor: Option<MonitorStats>,
    /// The monitor's view restricted to each instance's own connections.
    pub per_instance: Vec<MonitorStats>,
}

impl RedisPhase {
    pub fn total(&self) -> u64 {
        self.commands.values().sum()
    }

    /// Commands the instances sent (not run by scripts), all instances together.
    pub fn sent(&self) -> Option<u64> {
        self.monitor
            .as_ref()
            .map(|_| self.per_instance.iter().map(|m| m.client_commands()).sum())
    }

    pub fn in_scripts(&self) -> Option<u64> {
        self.monitor.as_ref().map(MonitorStats::script_commands)
    }

    /// Exchanges with Redis (bursts of commands, see `redis::BURST_GAP_SECS`).
    pub fn batches(&self) -> Option<u64> {
        self.monitor
            .as_ref()
            .map(|_| self.per_instance.iter().map(|m| m.client_batches()).sum())
    }

    /// The figures normalised by `per` events (joins, leaves, seconds...).
    pub fn json_per(&self, per: f64, unit: &str) -> Value {
        let per = per.max(1.0);
        let norm = |v: u64| round(v as f64 / per, 3);
        let sent_by_cmd: BTreeMap<String, f64> = self
            .per_instance
            .iter()
            .flat_map(|m| m.client_by_command())
            .fold(BTreeMap::new(), |mut acc, (k, v)| {
                *acc.entry(k).or_insert(0.0) += v as f64;
                acc
            })
            .into_iter()
            .map(|(k, v)| (k, round(v / per, 3)))
            .collect();
        let all_by_cmd: BTreeMap<String, f64> = self
            .commands
            .iter()
            .map(|(k, v)| (k.clone(), norm(*v)))
            .collect();
        json!({
            "per": unit,
            "sent": self.sent().map(norm),
            "exchanges_est": self.batches().map(norm),
            "in_scripts": self.in_scripts().map(norm),
            "commandstats_total": norm(self.total()),
            "commands_processed": norm(self.processed),
            "sent_by_command": sent_by_cmd,
            "commandstats_by_command": all_by_cmd,
        })
    }
}

/// Client-side anomaly counters summed over clients, and the checks they imply.
pub fn anomalies(clients: &[&Client]) -> Value {
    let mut errors = 0;
    let mut gaps = 0;
    let mut stale = 0;
    let mut malformed = 0;
    let mut off = 0;
    let mut regressions = 0;
    let mut server_closed = 0;
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    // By close code ("none": the connection ended without a close frame).
    let mut closes: BTreeMap<String, u64> = BTreeMap::new();
    for c in clients {
        let s: ClientState = c.snapshot();
        let a = s.roster.anomalies;
        errors += a.errors;
        gaps += a.gaps;
        stale += a.stale;
        malformed += a.malformed;
        off += a.off_protocol;
        regressions += a.regressions;
        if s.closed_by_server {
            server_closed += 1;
            let code = s.close_code.map_or("none".to_string(), |c| c.to_string());
            *closes.entry(code).or_default() += 1;
        }
        if let Some(code) = s.roster.last_error {
            *codes.entry(code).or_default() += 1;
        }
    }
    json!({
        "error_frames": errors,
        "error_codes": codes,
        "version_gaps": gaps,
        "stale_diffs": stale,
        "malformed": malformed,
        "off_protocol": off,
        "version_regressions": regressions,
        "closed_by_server": server_closed,
        "server_close_codes": closes,
    })
}

/// Records the standard correctness checks on an anomalies summary.
pub fn check_anomalies(o: &mut crate::report::Outcome, a: &Value, allow_server_close: bool) {
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    o.check(
        "no_error_frames",
        n("error_frames") == 0,
        format!("{} error frames {}", n("error_frames"), a["error_codes"]),
    );
    o.check(
        "well_formed",
        n("malformed") + n("off_protocol") == 0,
        format!(
            "{} malformed, {} off-protocol frames",
            n("malformed"),
            n("off_protocol")
        ),
    );
    if !allow_server_close {
        o.check(
            "no_server_close",
            n("closed_by_server") == 0,
            format!(
                "{} sockets closed by the server {}",
                n("closed_by_server"),
                a["server_close_codes"]
            ),
        );
    }
}

/// Latency from `t0` to a stamp, in ms (0 when the stamp is earlier: already there).
pub fn since_ms(t0: Instant, t: Instant) -> f64 {
    crate::stats::ms(t.saturating_duration_since(t0))
}

/// Opens clients and sends their hellos, `concurrency` handshakes at a time; returns
/// the clients, the time the handshakes took and the first error.
pub async fn open_and_join(
    specs: Vec<Spec>,
    signal: &Arc<Signal>,
    concurrency: usize,
) -> (Vec<Client>, Duration, Option<(usize, anyhow::Error)>) {
    let t = Instant::now();
    let (clients, err) = client::connect_all(specs, signal.clone(), concurrency).await;
    let open = t.elapsed();
    for c in &clients {
        c.hello();
    }
    (clients, open, err)
}

/// Raw-pointer-free view of a slice of clients as references.
pub fn refs(clients: &[Client]) -> Vec<&Client> {
    clients.iter().collect()
}

/// The Prometheus text of herenow's `/server/metrics` as `name{labels}` -> value.
pub fn parse_metrics(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, v) = l.trim().rsplit_once(' ')?;
            Some((name.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// What a herenow instance says about itself: sockets, frames and bytes queued, and
/// sockets it closed by reason (`stale`: no inbound frame for STALE_MS; `slow`: outbound
/// queue overflowing, 1013). `None` for a server without that endpoint.
pub async fn server_view(cluster: &Cluster) -> Option<Value> {
    let mut out = Vec::new();
    for s in &cluster.servers {
        let (status, body) = crate::servers::http_get(s.addr, "/server/metrics")
            .await
            .ok()?;
        if status != 200 {
            return None;
        }
        let m = parse_metrics(&body);
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let closes: BTreeMap<&str, f64> = ["policy", "too_big", "slow", "stale"]
            .into_iter()
            .map(|r| {
                (
                    r,
                    get(&format!("herenow_server_closes_total{{reason=\"{r}\"}}")),
                )
            })
            .collect();
        out.push(json!({
            "sockets": get("herenow_sockets"),
            "members": get("herenow_members"),
            "frames_out": get("herenow_messages_out_total"),
            "bytes_out": get("herenow_bytes_out_total"),
            "broadcasts": get("herenow_broadcasts_total"),
            "closes": closes,
        }));
    }
    Some(if out.len() == 1 {
        out.remove(0)
    } else {
        Value::Array(out)
    })
}

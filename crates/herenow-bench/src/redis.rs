//! Just enough of the Redis protocol to watch a `redis-server` the bench started: `INFO`
//! counters before and after a phase, and a `MONITOR` feed that tells the commands an
//! instance sends apart from the ones its Lua scripts run (`INFO commandstats` counts
//! both under the same names).

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string).
    pub fn text(&self) -> Result<String> {
        match self {
            Reply::Simple(s) => Ok(s.clone()),
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Reply::Error(e) => bail!("redis error: {e}"),
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A plain connection for a few commands at a time.
pub struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .context("connecting to redis timed out")??;
        Ok(Conn {
            io: BufReader::new(s),
        })
    }

    pub async fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        self.io.get_mut().write_all(&encode(args)).await?;
        tokio::time::timeout(Duration::from_secs(5), read_reply(&mut self.io))
            .await
            .context("redis reply timed out")?
    }

    /// `INFO <section>` as text.
    pub async fn info(&mut self, section: &str) -> Result<String> {
        self.cmd(&["INFO", section]).await?.text()
    }
}

async fn read_line(io: &mut BufReader<TcpStream>) -> Result<String> {
    let mut line = String::new();
    if io.read_line(&mut line).await? == 0 {
        bail!("redis closed the connection");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_reply(
    io: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(io).await?;
        let (tag, rest) = line.split_at(1.min(line.len()));
        Ok(match tag {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse()?),
            "$" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    io.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Reply::Bulk(Some(buf))
                }
            }
            "*" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(read_reply(io).await?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => bail!("bad RESP line {line:?}"),
        })
    })
}

/// `cmdstat_<name>:calls=N,...` lines of `INFO commandstats` as name -> calls.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// A `field:value` of any `INFO` section.
pub fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

/// Counter differences, dropping the commands the bench itself sends (`info`, `ping`).
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "info" | "ping" | "monitor"))
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(*before.get(k).unwrap_or(&0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// `INFO commandstats` plus `total_commands_processed`, read together.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub commands: BTreeMap<String, u64>,
    pub total: u64,
}

pub async fn counters(addr: SocketAddr) -> Result<Counters> {
    let mut c = Conn::connect(addr).await?;
    let stats = c.info("stats").await?;
    let cmds = c.info("commandstats").await?;
    Ok(Counters {
        commands: parse_commandstats(&cmds),
        total: info_field(&stats, "total_commands_processed").unwrap_or(0),
    })
}

/// Where a monitored command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Run by a Lua script (`redis.call`).
    Lua,
    /// Sent by the client at this address.
    Client(String),
}

/// One `MONITOR` line: `<unix secs.micros> [<db> <addr>|lua] "CMD" "arg" ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorLine {
    pub at: f64,
    pub source: Source,
    pub command: String,
}

pub fn parse_monitor_line(line: &str) -> Option<MonitorLine> {
    let line = line.strip_prefix('+').unwrap_or(line);
    let (at, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('[')?;
    let (who, rest) = rest.split_once(']')?;
    let who = who.split_whitespace().nth(1)?;
    let command = rest.trim_start().strip_prefix('"')?.split('"').next()?;
    Some(MonitorLine {
        at: at.parse().ok()?,
        source: if who == "lua" {
            Source::Lua
        } else {
            Source::Client(who.to_string())
        },
        command: command.to_ascii_lowercase(),
    })
}

/// Commands seen by `MONITOR`, split by origin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStats {
    /// Commands a client sent, by client address then command name.
    pub by_client: BTreeMap<String, BTreeMap<String, u64>>,
    /// Round trips per client address, estimated: consecutive commands of one client less
    /// than `BURST_GAP` apart count as one pipelined batch.
    pub batches: BTreeMap<String, u64>,
    /// Commands run inside scripts, by name.
    pub in_scripts: BTreeMap<String, u64>,
    #[serde(skip)]
    last_at: BTreeMap<String, f64>,
}

/// Two commands of one client closer than this are taken as one pipelined batch.
pub const BURST_GAP_SECS: f64 = 0.0005;

impl MonitorStats {
    pub fn add(&mut self, l: &MonitorLine) {
        match &l.source {
            Source::Lua => *self.in_scripts.entry(l.command.clone()).or_default() += 1,
            Source::Client(addr) => {
                *self
                    .by_client
                    .entry(addr.clone())
                    .or_default()
                    .entry(l.command.clone())
                    .or_default() += 1;
                let last = self.last_at.insert(addr.clone(), l.at);
                if last.is_none_or(|t| l.at - t > BURST_GAP_SECS) {
                    *self.batches.entry(addr.clone()).or_default() += 1;
                }
            }
        }
    }

    /// Commands sent by clients, all clients together.
    pub fn client_commands(&self) -> u64 {
        self.by_client.values().flat_map(|m| m.values()).sum()
    }

    pub fn script_commands(&self) -> u64 {
        self.in_scripts.values().sum()
    }

    pub fn client_batches(&self) -> u64 {
        self.batches.values().sum()
    }

    /// Client commands by name, all clients together.
    pub fn client_by_command(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for m in self.by_client.values() {
            for (k, v) in m {
                *out.entry(k.clone()).or_default() += v;
            }
        }
        out
    }

    /// Keeps only the given client addresses (the instances' connections).
    pub fn only_clients(&self, addrs: &[String]) -> MonitorStats {
        let keep = |m: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
            m.iter()
                .filter(|(k, _)| addrs.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        MonitorStats {
            by_client: self
                .by_client
                .iter()
                .filter(|(k, _)| addrs.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            batches: keep(&self.batches),
            in_scripts: self.in_scripts.clone(),
            last_at: BTreeMap::new(),
        }
    }
}

/// A running `MONITOR` feed; `stop` returns what it saw.
pub struct Monitor {
    stats: Arc<Mutex<MonitorStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    pub async fn start(addr: SocketAddr) -> Result<Monitor> {
        let mut c = Conn::connect(addr).await?;
        let ok = c.cmd(&["MONITOR"]).await?;
        if ok != Reply::Simple("OK".into()) {
            return Err(anyhow!("MONITOR answered {ok:?}"));
        }
        let stats = Arc::new(Mutex::new(MonitorStats::default()));
        let s = stats.clone();
        let task = tokio::spawn(async move {
            let mut line = String::new();
            loop {
                line.clear();
                match c.io.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(l) = parse_monitor_line(line.trim_end()) {
                            s.lock().unwrap().add(&l);
                        }
                    }
                }
            }
        });
        Ok(Monitor { stats, task })
    }

    /// Lets the feed drain for a moment, then stops it.
    pub async fn stop(self) -> MonitorStats {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
        let s = self.stats.lock().unwrap().clone();
        s
    }
}

/// Waits until `PING` answers.
pub async fn wait_ping(addr: SocketAddr, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(mut c) = Conn::connect(addr).await {
            if let Ok(Reply::Simple(s)) = c.cmd(&["PING"]).await {
                if s == "PONG" {
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("redis at {addr} did not answer PING within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_bulk_arrays() {
        assert_eq!(
            encode(&["INFO", "stats"]),
            b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n".to_vec()
        );
    }

    #[test]
    fn commandstats_and_fields() {
        let info = "# Commandstats\r\n\
            cmdstat_evalsha:calls=12,usec=100,usec_per_call=8.33,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_zadd:calls=30,usec=50,usec_per_call=1.6,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_info:calls=2,usec=61,usec_per_call=30.50,rejected_calls=0,failed_calls=0\r\n";
        let m = parse_commandstats(info);
        assert_eq!(m["evalsha"], 12);
        assert_eq!(m["zadd"], 30);
        let mut before = m.clone();
        before.insert("zadd".into(), 10);
        let d = delta(&before, &m);
        assert_eq!(d.get("zadd"), Some(&20));
        assert_eq!(d.get("evalsha"), None, "unchanged counters are dropped");
        assert_eq!(d.get("info"), None, "the bench's own commands are dropped");
        assert_eq!(
            info_field(
                "a:1\r\ntotal_commands_processed:42\r\n",
                "total_commands_processed"
            ),
            Some(42)
        );
    }

    #[test]
    fn monitor_lines_split_scripts_from_clients() {
        let a = parse_monitor_line(r#"+1700000000.100000 [0 127.0.0.1:5000] "EVALSHA" "abc" "2""#)
            .unwrap();
        assert_eq!(a.source, Source::Client("127.0.0.1:5000".into()));
        assert_eq!(a.command, "evalsha");
        let b = parse_monitor_line(r#"1700000000.100100 [0 lua] "zadd" "presence:{r}:online""#)
            .unwrap();
        assert_eq!(b.source, Source::Lua);
        let c =
            parse_monitor_line(r#"1700000000.100200 [0 127.0.0.1:5000] "PEXPIRE" "k""#).unwrap();
        let d = parse_monitor_line(r#"1700000001.000000 [0 127.0.0.1:5000] "ZADD" "k""#).unwrap();
        let mut s = MonitorStats::default();
        for l in [&a, &b, &c, &d] {
            s.add(l);
        }
        assert_eq!(s.client_commands(), 3);
        assert_eq!(s.script_commands(), 1);
        // a and c are 200 us apart (one batch); d comes a second later.
        assert_eq!(s.client_batches(), 2);
        assert_eq!(s.client_by_command()["zadd"], 1);
        assert_eq!(s.only_clients(&[]).client_commands(), 0);
        assert!(parse_monitor_line("OK").is_none());
    }
}

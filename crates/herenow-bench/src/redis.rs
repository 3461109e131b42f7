//! Just enough of the Redis protocol to watch a `redis-server` the bench started: `INFO`
//! counters before and after a phase, and a `MONITOR` feed that tells the commands an
//! instance sends apart from the ones its Lua scripts run (`INFO commandstats` counts
//! both under the same names), and by their keys a room's calls from the instance's
//! own liveness calls.

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
    /// Lower case.
    pub command: String,
    /// The arguments after the command, unquoted.
    pub args: Vec<String>,
}

pub fn parse_monitor_line(line: &str) -> Option<MonitorLine> {
    let line = line.strip_prefix('+').unwrap_or(line);
    let (at, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('[')?;
    let (who, rest) = rest.split_once(']')?;
    let who = who.split_whitespace().nth(1)?;
    let mut words = quoted_words(rest)?.into_iter();
    let command = words.next()?.to_ascii_lowercase();
    Some(MonitorLine {
        at: at.parse().ok()?,
        source: if who == "lua" {
            Source::Lua
        } else {
            Source::Client(who.to_string())
        },
        command,
        args: words.collect(),
    })
}

/// The `"..."` words of a `MONITOR` line, with Redis's escapes (`\\`, `\"`, `\n`,
/// `\r`, `\t`, `\a`, `\b`, `\xHH`) undone.
fn quoted_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => continue,
            '"' => {}
            _ => return None,
        }
        let mut bytes = Vec::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => bytes.push(b'\n'),
                    'r' => bytes.push(b'\r'),
                    't' => bytes.push(b'\t'),
                    'a' => bytes.push(7),
                    'b' => bytes.push(8),
                    'x' => {
                        let hex: String = [chars.next()?, chars.next()?].iter().collect();
                        bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                    }
                    other => {
                        let mut b = [0; 4];
                        bytes.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
                    }
                },
                other => {
                    let mut b = [0; 4];
                    bytes.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Some(out)
}

/// What a command an instance sends is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// It names a room key (one with a `{room}` hash tag, `<prefix>:{room}:...`): a
    /// room's join, leave, state, heartbeat touch or snapshot.
    Room,
    /// The instance's own liveness: a call on keys without a room tag (the lease set),
    /// or a connection probe (`CLIENT ID`, `PING`).
    Liveness,
    /// Anything else: `SCRIPT LOAD`, subscriptions, publishing.
    Other,
}

/// The keys a command names: a script's declared keys, none for commands that take
/// none (or only channels), else the first argument.
pub fn command_keys<'a>(command: &str, args: &'a [String]) -> &'a [String] {
    match command {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => {
            let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            args.get(2..2 + n).unwrap_or(&[])
        }
        "client" | "ping" | "script" | "info" | "hello" | "auth" | "select" | "cluster"
        | "command" | "echo" | "time" | "monitor" | "readonly" | "quit" | "reset" | "multi"
        | "exec" | "discard" | "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe"
        | "ssubscribe" | "sunsubscribe" | "publish" | "spublish" => &[],
        _ => args.get(..1).unwrap_or(&[]),
    }
}

/// A key with a non-empty `{...}` hash tag: a room's.
pub fn is_room_key(key: &str) -> bool {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .is_some_and(|(tag, _)| !tag.is_empty())
}

pub fn purpose(command: &str, args: &[String]) -> Purpose {
    let keys = command_keys(command, args);
    if keys.iter().any(|k| is_room_key(k)) {
        Purpose::Room
    } else if !keys.is_empty() || matches!(command, "client" | "ping") {
        Purpose::Liveness
    } else {
        Purpose::Other
    }
}

/// What one client (an instance's connection) sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStats {
    /// Commands by name.
    pub commands: BTreeMap<String, u64>,
    /// Exchanges with Redis (see `MonitorStats::add`): of any commands, of room calls,
    /// of liveness calls.
    pub batches: u64,
    pub room_batches: u64,
    pub liveness_batches: u64,
    /// Calls by purpose.
    pub room_calls: u64,
    pub liveness_calls: u64,
    /// When the first and the last exchange of each kind started (unix seconds).
    #[serde(skip)]
    room_span: Option<(f64, f64)>,
    #[serde(skip)]
    liveness_span: Option<(f64, f64)>,
    /// The last command of any kind, of room calls, of liveness calls.
    #[serde(skip)]
    last: (Option<f64>, Option<f64>, Option<f64>),
}

/// Commands seen by `MONITOR`, split by origin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStats {
    /// By client address.
    pub clients: BTreeMap<String, ClientStats>,
    /// Commands run inside scripts, by name.
    pub in_scripts: BTreeMap<String, u64>,
}

/// A client's commands of one kind less than this apart are one exchange.
///
/// `MONITOR` cannot tell a pipeline from round trips made back to back on loopback:
/// the gaps inside one pipeline (a `SCRIPT LOAD` compiling, a second read of the query
/// buffer, another client's pipeline interleaved) and between two round trips (reply,
/// wake-up, next write) are both a fraction of a millisecond to a few. So it counts
/// exchanges: bursts of calls, separated by quiet. An instance's heartbeat is one burst
/// a heartbeat interval, however it is sent; whether a burst is one pipeline is for the
/// server's code (and `tcp_writes` in `soak`) to say.
pub const BURST_GAP_SECS: f64 = 0.010;

fn new_burst(last: &mut Option<f64>, at: f64) -> bool {
    let new = last.is_none_or(|t| at - t > BURST_GAP_SECS);
    *last = Some(at);
    new
}

impl MonitorStats {
    /// Counts one line: its command for its client, its exchange of each kind (a
    /// command starts a new one when the client's previous command of that kind is more
    /// than `BURST_GAP_SECS` older). Kinds are kept apart, so a lease renewal that
    /// happens to fall inside a heartbeat does not merge with it.
    pub fn add(&mut self, l: &MonitorLine) {
        let addr = match &l.source {
            Source::Lua => {
                *self.in_scripts.entry(l.command.clone()).or_default() += 1;
                return;
            }
            Source::Client(addr) => addr,
        };
        let c = self.clients.entry(addr.clone()).or_default();
        *c.commands.entry(l.command.clone()).or_default() += 1;
        if new_burst(&mut c.last.0, l.at) {
            c.batches += 1;
        }
        match purpose(&l.command, &l.args) {
            Purpose::Room => {
                c.room_calls += 1;
                if new_burst(&mut c.last.1, l.at) {
                    c.room_batches += 1;
                    c.room_span = Some(widen(c.room_span, l.at));
                }
            }
            Purpose::Liveness => {
                c.liveness_calls += 1;
                if new_burst(&mut c.last.2, l.at) {
                    c.liveness_batches += 1;
                    c.liveness_span = Some(widen(c.liveness_span, l.at));
                }
            }
            Purpose::Other => {}
        }
    }

    fn sum(&self, f: impl Fn(&ClientStats) -> u64) -> u64 {
        self.clients.values().map(f).sum()
    }

    /// Commands sent by clients, all clients together.
    pub fn client_commands(&self) -> u64 {
        self.sum(|c| c.commands.values().sum())
    }

    pub fn script_commands(&self) -> u64 {
        self.in_scripts.values().sum()
    }

    pub fn client_batches(&self) -> u64 {
        self.sum(|c| c.batches)
    }

    pub fn room_batches(&self) -> u64 {
        self.sum(|c| c.room_batches)
    }

    pub fn liveness_batches(&self) -> u64 {
        self.sum(|c| c.liveness_batches)
    }

    pub fn room_calls(&self) -> u64 {
        self.sum(|c| c.room_calls)
    }

    pub fn liveness_calls(&self) -> u64 {
        self.sum(|c| c.liveness_calls)
    }

    /// How many intervals of `period_secs` the room round trips cover: the span from
    /// the first to the last, in periods, plus one. Phase-proof: k heartbeats in a window
    /// are k intervals however the window falls, and two per interval still count double.
    pub fn room_intervals(&self, period_secs: f64) -> Option<f64> {
        intervals(
            self.clients.values().filter_map(|c| c.room_span),
            period_secs,
        )
    }

    /// The same for the liveness round trips.
    pub fn liveness_intervals(&self, period_secs: f64) -> Option<f64> {
        intervals(
            self.clients.values().filter_map(|c| c.liveness_span),
            period_secs,
        )
    }

    /// Client commands by name, all clients together.
    pub fn client_by_command(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for c in self.clients.values() {
            for (k, v) in &c.commands {
                *out.entry(k.clone()).or_default() += v;
            }
        }
        out
    }

    /// Keeps only the given client addresses (the instances' connections).
    pub fn only_clients(&self, addrs: &[String]) -> MonitorStats {
        MonitorStats {
            clients: self
                .clients
                .iter()
                .filter(|(k, _)| addrs.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            in_scripts: self.in_scripts.clone(),
        }
    }
}

fn widen(span: Option<(f64, f64)>, at: f64) -> (f64, f64) {
    match span {
        Some((a, b)) => (a.min(at), b.max(at)),
        None => (at, at),
    }
}

fn intervals(spans: impl Iterator<Item = (f64, f64)>, period_secs: f64) -> Option<f64> {
    let (first, last) = spans.reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))?;
    Some(((last - first) / period_secs).round() + 1.0)
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
        assert_eq!(a.args, ["abc", "2"]);
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
        // a and c are 200 us apart (one exchange); d comes a second later.
        assert_eq!(s.client_batches(), 2);
        assert_eq!(s.client_by_command()["zadd"], 1);
        assert_eq!(s.only_clients(&[]).client_commands(), 0);
        assert!(parse_monitor_line("OK").is_none());
    }

    #[test]
    fn monitor_arguments_are_unquoted() {
        let l = parse_monitor_line(
            r#"1700000000.000001 [0 127.0.0.1:1] "SET" "a\"b" "c\\d" "\x00\n" "{\"j\":1}""#,
        )
        .unwrap();
        assert_eq!(l.args, ["a\"b", "c\\d", "\u{0}\n", r#"{"j":1}"#]);
    }

    fn line(at_us: u64, who: &str, words: &str) -> MonitorLine {
        let who = if who == "lua" {
            "0 lua".to_string()
        } else {
            format!("0 {who}")
        };
        let (secs, us) = (1_700_000_000 + at_us / 1_000_000, at_us % 1_000_000);
        parse_monitor_line(&format!("{secs}.{us:06} [{who}] {words}")).unwrap()
    }

    const TOUCH: &str = r#""EVALSHA" "t" "4" "presence:{k-1}:online" "presence:{k-1}:meta" "presence:{k-1}:version" "presence:{k-1}:seen" "presence:{k-1}:changed" "PUBLISH" "i1" "15000" "15000""#;
    const LEASE: &str = r#""EVALSHA" "l" "1" "presence:leases" "i1" "6000" "15000""#;

    #[test]
    fn purposes_follow_the_keys() {
        let p = |w: &str| {
            let l = line(0, "a:1", w);
            purpose(&l.command, &l.args)
        };
        assert_eq!(p(TOUCH), Purpose::Room);
        assert_eq!(p(LEASE), Purpose::Liveness);
        assert_eq!(p(r#""CLIENT" "ID""#), Purpose::Liveness);
        assert_eq!(p(r#""PING""#), Purpose::Liveness);
        assert_eq!(p(r#""SCRIPT" "LOAD" "return 1""#), Purpose::Other);
        assert_eq!(p(r#""SUBSCRIBE" "presence:{k-1}:changed""#), Purpose::Other);
        assert_eq!(p(r#""HGETALL" "presence:{k-1}:meta""#), Purpose::Room);
        assert!(!is_room_key("presence:{}:x"));
    }

    #[test]
    fn exchanges_by_purpose() {
        let mut s = MonitorStats::default();
        // A heartbeat pipeline (SCRIPT LOAD and two touches, one script's lines after
        // its call), another instance's interleaved, and a pause of 2.6 ms inside it.
        s.add(&line(0, "a:1", r#""SCRIPT" "LOAD" "x""#));
        s.add(&line(700, "a:1", TOUCH));
        s.add(&line(720, "lua", r#""zadd" "presence:{k-1}:seen""#));
        s.add(&line(900, "b:2", TOUCH));
        s.add(&line(1000, "b:2", TOUCH));
        s.add(&line(3600, "a:1", TOUCH));
        // The lease 5 ms later (within the heartbeat's time, kept apart from it).
        s.add(&line(8_000, "a:1", LEASE));
        // 2 s later the lease, then CLIENT ID 0.2 ms after: one exchange, pipelined
        // or not; 2 s later both again.
        s.add(&line(2_008_000, "a:1", LEASE));
        s.add(&line(2_008_200, "a:1", r#""CLIENT" "ID""#));
        s.add(&line(4_008_000, "a:1", r#""CLIENT" "ID""#));
        s.add(&line(4_008_100, "a:1", LEASE));
        let a = s.only_clients(&["a:1".into()]);
        assert_eq!(a.room_batches(), 1, "one heartbeat");
        assert_eq!(a.room_calls(), 2);
        assert_eq!(a.liveness_batches(), 3);
        assert_eq!(a.liveness_calls(), 5);
        assert_eq!(a.client_batches(), 3);
        assert_eq!(a.liveness_intervals(2.0), Some(3.0));
        assert_eq!(a.room_intervals(5.0), Some(1.0));
        let b = s.only_clients(&["b:2".into()]);
        assert_eq!((b.room_batches(), b.room_calls()), (1, 2));
    }
}
